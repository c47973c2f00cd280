"""The ``wann`` step: weight-agnostic topology search (Gaier & Ha 2019).

Networks start minimal (no hidden node, a few input -> output connections) and grow by three
mutations: add a node (split a connection), add a connection (only forward, so the network
stays acyclic), change a node's activation. Every connection shares one weight; a network's
fitness is its accuracy on the training split averaged over a set of shared-weight values, and
its number of connections is a second objective: each generation is ranked by Pareto rank on
(mean accuracy, connections), or with probability ``performance_only`` on (mean accuracy,
best accuracy), as in the paper. After the search the shared weight is tuned on the validation
split (a fine grid), and the network becomes a saved ``wann`` model. A random topology with the
same number of connections and hidden nodes is measured over the same weights as a yardstick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn
from tqdm import tqdm

from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.models import build_model
from nnopt.models.wann import ACTIVATIONS, Wann, WannConfig, position
from nnopt.search.pareto import pareto_ranks


class WannSearchConfig(Strict):
    generations: int = Field(64, ge=1, le=100_000)
    population: int = Field(64, ge=4, le=100_000)
    elite: int = Field(8, ge=0, description="best networks kept unchanged each generation")
    tournament: int = Field(4, ge=1, le=100_000)
    weights: list[float] = Field(default_factory=lambda: [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0],
                                 min_length=1, description="shared-weight values a network "
                                 "is judged on (its fitness is the mean accuracy over them)")
    init_connections: float = Field(0.05, gt=0, le=1, description="chance of each "
                                    "input -> output connection in the first networks")
    p_add_node: float = Field(0.25, ge=0)
    p_add_connection: float = Field(0.5, ge=0)
    p_change_activation: float = Field(0.25, ge=0)
    performance_only: float = Field(0.2, ge=0, le=1, description="share of generations "
                                    "ranked on mean and best accuracy instead of mean "
                                    "accuracy and connections")
    activations: list[str] = Field(default_factory=lambda: list(ACTIVATIONS))
    limit: int | None = Field(None, ge=1, description="training examples the fitness uses")
    random_topologies: int = Field(5, ge=1, description="random networks of the found one's "
                                   "size measured beside it")
    tune_grid: int = Field(121, ge=2, description="shared-weight values tried (from -3 to 3) "
                           "when tuning the found network on the validation split")

    @field_validator("activations")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"unknown activation {bad[0]!r}; choose {', '.join(ACTIVATIONS)}")
        return v


@dataclass
class Genome:
    """A topology: hidden nodes in evaluation order, output activations, connections."""

    n_in: int
    outputs: list[str]
    hidden: list[tuple[int, str]] = field(default_factory=list)
    connections: set[tuple[str, str]] = field(default_factory=set)
    next_id: int = 0

    def copy(self) -> Genome:
        return Genome(self.n_in, list(self.outputs), list(self.hidden), set(self.connections),
                      self.next_id)

    def position(self, node: str) -> float:
        return position(node, {f"h{i}": k for k, (i, _) in enumerate(self.hidden)})

    def sources(self) -> list[str]:
        return [f"i{k}" for k in range(self.n_in)] + ["bias"] + [f"h{i}" for i, _ in self.hidden]

    def destinations(self) -> list[str]:
        return [f"h{i}" for i, _ in self.hidden] + [f"o{k}" for k in range(len(self.outputs))]

    def config(self, weight: float = 1.0) -> WannConfig:
        return WannConfig(hidden=[{"id": i, "activation": a} for i, a in self.hidden],
                          output_activations=list(self.outputs),
                          connections=sorted(self.connections), weight=weight)


def minimal(n_in: int, n_out: int, share: float, rng: random.Random) -> Genome:
    g = Genome(n_in, ["linear"] * n_out)
    for k in range(n_out):
        picks = [i for i in range(n_in + 1) if rng.random() < share] or [rng.randrange(n_in)]
        g.connections |= {("bias" if i == n_in else f"i{i}", f"o{k}") for i in picks}
    return g


def add_node(g: Genome, rng: random.Random, acts: list[str]) -> Genome:
    """Split a connection s -> d into s -> new -> d; the new node sits between s and d."""
    if not g.connections:
        return add_connection(g, rng)
    out = g.copy()
    s, d = rng.choice(sorted(out.connections))
    lo = int(out.position(s)) + 1 if s.startswith("h") else 0
    hi = int(out.position(d)) if d.startswith("h") else len(out.hidden)
    out.hidden.insert(rng.randint(lo, hi), (out.next_id, rng.choice(acts)))
    new = f"h{out.next_id}"
    out.next_id += 1
    out.connections -= {(s, d)}
    out.connections |= {(s, new), (new, d)}
    return out


def add_connection(g: Genome, rng: random.Random, tries: int = 200) -> Genome:
    """A new forward connection between two unconnected nodes (unchanged if none is found)."""
    out = g.copy()
    srcs, dsts = out.sources(), out.destinations()
    for _ in range(tries):
        s, d = rng.choice(srcs), rng.choice(dsts)
        if (s, d) not in out.connections and out.position(s) < out.position(d):
            out.connections.add((s, d))
            return out
    return out


def change_activation(g: Genome, rng: random.Random, acts: list[str]) -> Genome:
    out = g.copy()
    k = rng.randrange(len(out.hidden) + len(out.outputs))
    if k < len(out.hidden):
        i, a = out.hidden[k]
        out.hidden[k] = (i, rng.choice([b for b in acts if b != a] or [a]))
    else:
        a = out.outputs[k - len(out.hidden)]
        out.outputs[k - len(out.hidden)] = rng.choice([b for b in acts if b != a] or [a])
    return out


def mutate(g: Genome, cfg: WannSearchConfig, rng: random.Random) -> Genome:
    r = rng.random() * (cfg.p_add_node + cfg.p_add_connection + cfg.p_change_activation)
    if r < cfg.p_add_node:
        return add_node(g, rng, cfg.activations)
    if r < cfg.p_add_node + cfg.p_add_connection:
        return add_connection(g, rng)
    return change_activation(g, rng, cfg.activations)


def random_topology(n_in: int, n_out: int, hidden: int, connections: int,
                    rng: random.Random, acts: list[str]) -> Genome:
    """A random acyclic network with the given numbers of hidden nodes and connections."""
    g = Genome(n_in, [rng.choice(acts) for _ in range(n_out)],
               [(i, rng.choice(acts)) for i in range(hidden)], next_id=hidden)
    pairs = [(s, d) for s in g.sources() for d in g.destinations()
             if g.position(s) < g.position(d)]
    g.connections = set(rng.sample(pairs, min(connections, len(pairs))))
    return g


def sweep_accuracy(genome_or_cfg: Genome | WannConfig, x: torch.Tensor, y: torch.Tensor,
                   weights: list[float], num_classes: int) -> list[float]:
    """Accuracy at each shared-weight value (all values in one batch)."""
    cfg = genome_or_cfg.config() if isinstance(genome_or_cfg, Genome) else genome_or_cfg
    net = Wann(cfg, tuple(x.shape[1:]), num_classes)
    w = torch.tensor(weights, dtype=x.dtype).repeat_interleave(len(x))
    with torch.no_grad():
        out = net(x.repeat(len(weights), *([1] * (x.dim() - 1))), weights=w)
    hit = (out.view(len(weights), len(x), -1).argmax(-1) == y).double().mean(1)
    return hit.tolist()


def evolve(cfg: WannSearchConfig, x: torch.Tensor, y: torch.Tensor, num_classes: int,
           seed: int, bar: Any = None) -> tuple[Genome, list[dict[str, Any]]]:
    """The search; returns the best network (mean accuracy, fewer connections on ties) and the
    per-generation history."""
    rng = random.Random(seed)
    n_in = x[0].numel()
    pop = [minimal(n_in, num_classes, cfg.init_connections, rng) for _ in range(cfg.population)]
    history: list[dict[str, Any]] = []
    best: tuple[float, int, Genome] | None = None
    known: dict[int, tuple[Genome, list[float]]] = {}  # kept networks are not measured again
    for gen in range(cfg.generations):
        scores = [known[id(g)][1] if id(g) in known and known[id(g)][0] is g else
                  sweep_accuracy(g, x, y, cfg.weights, num_classes) for g in pop]
        known = {id(g): (g, s) for g, s in zip(pop, scores)}
        mean = [sum(s) / len(s) for s in scores]
        top = [max(s) for s in scores]
        conns = [len(g.connections) for g in pop]
        by_perf = rng.random() < cfg.performance_only
        points = [[-m, -t] if by_perf else [-m, c] for m, t, c in zip(mean, top, conns)]
        ranks = pareto_ranks(points)
        order = sorted(range(len(pop)), key=lambda i: (ranks[i], -mean[i], conns[i]))
        i0 = max(range(len(pop)), key=lambda i: (mean[i], -conns[i]))
        if best is None or (mean[i0], -conns[i0]) > (best[0], -best[1]):
            best = (mean[i0], conns[i0], pop[i0])
        history.append({"generation": gen + 1, "best_mean_accuracy": max(mean),
                        "median_mean_accuracy": sorted(mean)[len(mean) // 2],
                        "best_max_accuracy": max(top),
                        "connections_of_best": conns[i0], "hidden_of_best": len(pop[i0].hidden),
                        "ranked_on": "mean, best accuracy" if by_perf else
                        "mean accuracy, connections"})
        place = {i: k for k, i in enumerate(order)}
        children = [pop[i] for i in order[:cfg.elite]]
        while len(children) < cfg.population:
            entrants = rng.sample(range(len(pop)), min(cfg.tournament, len(pop)))
            parent = pop[min(entrants, key=lambda i: place[i])]
            children.append(mutate(parent, cfg, rng))
        pop = children
        if bar is not None:
            bar.update(1)
            bar.set_postfix(mean_acc=f"{max(mean):.3f}", conns=conns[i0])
    assert best is not None
    return best[2], history


def _grid(n: int) -> list[float]:
    """n shared-weight values evenly from -3 to 3, zero left out (every node would see 0)."""
    return [w for w in (-3 + 6 * k / (n - 1) for k in range(n)) if abs(w) > 1e-9]


@STEPS.register("wann", config=WannSearchConfig,
                tiny={"generations": 2, "population": 6, "elite": 2, "tournament": 2,
                      "weights": [-1.0, 1.0], "limit": 64, "tune_grid": 5,
                      "random_topologies": 1})
def wann_step(model: nn.Module, cfg: WannSearchConfig, ctx: RunContext) -> nn.Module:
    """Search a weight-agnostic topology; tune its shared weight; the network is the model."""
    data = ctx.data
    if data.train.x.dtype not in (torch.float32, torch.float64):
        raise NnoptError("wann searches networks on numeric features; this data's inputs are "
                         f"{data.train.x.dtype} (token ids?)")
    norm = build_model(WannConfig(), data.input_shape, data.num_classes, data.mean,
                       data.std).normalize
    fitness = data.train.subset(cfg.limit, ctx.seed)
    with torch.no_grad():
        x, y = norm(fitness.x.float()), fitness.y
    bar = None
    if ctx.progress:
        bar = tqdm(total=cfg.generations, desc=f"{ctx.stage} generations", leave=False)
    try:
        found, history = evolve(cfg, x, y, data.num_classes, ctx.seed, bar)
    finally:
        if bar is not None:
            bar.close()
    judge = data.val if len(data.val) else data.train
    with torch.no_grad():
        xv = norm(judge.x.float())
    grid = _grid(cfg.tune_grid)
    tuned = sweep_accuracy(found, xv, judge.y, grid, data.num_classes)
    w_best = grid[max(range(len(grid)), key=lambda k: tuned[k])]
    # the yardstick: random topologies of the same size, judged on the same weights
    rng = random.Random(ctx.seed + 1)
    randoms = [random_topology(found.n_in, data.num_classes, len(found.hidden),
                               len(found.connections), rng, cfg.activations)
               for _ in range(cfg.random_topologies)]
    with torch.no_grad():
        xt = norm(data.test.x.float())
    yt, k = data.test.y, data.num_classes
    curve = _grid(49)
    out = build_model(found.config(w_best), data.input_shape, data.num_classes, data.mean,
                      data.std)
    ctx.record("wann", {
        "weights": cfg.weights, "generations": history,
        "genome": found.config().model_dump(mode="json"),
        "connections": len(found.connections), "hidden": len(found.hidden),
        "inputs": found.n_in, "fitness_examples": len(x),
        "test_sweep": {"found": sweep_accuracy(found, xt, yt, cfg.weights, k),
                       "random": [sweep_accuracy(r, xt, yt, cfg.weights, k) for r in randoms]},
        "test_curve": {"weights": curve, "found": sweep_accuracy(found, xt, yt, curve, k),
                       "random": [sweep_accuracy(r, xt, yt, curve, k) for r in randoms]},
        "tuning": {"split": "validation" if len(data.val) else "train", "grid": grid,
                   "accuracy": tuned, "weight": w_best}})
    return out
