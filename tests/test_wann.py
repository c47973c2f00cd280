"""Weight-agnostic networks: the genome's forward pass by hand, mutations keep the network
acyclic, the weight sweep, and the wann step's report and saved model."""

from __future__ import annotations

import random

import pytest
import torch

from conftest import tiny_raw
from nnopt.models import build_model, load_model
from nnopt.models.wann import WannConfig
from nnopt.recipe import resolve
from nnopt.runner import run_recipe
from nnopt.search.wann import (
    Genome,
    WannSearchConfig,
    add_connection,
    add_node,
    change_activation,
    minimal,
    mutate,
    random_topology,
    sweep_accuracy,
)


def _acyclic(cfg: WannConfig) -> bool:
    """Kahn's algorithm over the connections, independent of the genome's node order."""
    edges = [tuple(c) for c in cfg.connections]
    nodes = {n for e in edges for n in e}
    indeg = {n: 0 for n in nodes}
    for _, d in edges:
        indeg[d] += 1
    ready = [n for n, k in indeg.items() if k == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for s, d in edges:
            if s == n:
                indeg[d] -= 1
                if indeg[d] == 0:
                    ready.append(d)
    return seen == len(nodes)


def test_forward_pass_by_hand():
    cfg = WannConfig(hidden=[{"id": 0, "activation": "tanh"}],
                     output_activations=["linear", "abs"],
                     connections=[["i0", "h0"], ["h0", "o0"], ["i1", "o0"], ["bias", "o1"],
                                  ["i1", "o1"]], weight=0.5)
    model = build_model(cfg, (2,), 2)
    x = torch.tensor([[1.0, -2.0], [0.3, 0.7]])
    h0 = torch.tanh(0.5 * x[:, 0])
    want = torch.stack([0.5 * (h0 + x[:, 1]), (0.5 * (1 + x[:, 1])).abs()], 1)
    assert torch.allclose(model(x), want)
    sweep = model.net(x, weights=torch.tensor([0.5, 0.5]))
    assert torch.allclose(sweep, want)


@pytest.mark.parametrize("bad", [[["h0", "h0"]], [["o0", "h0"]], [["h1", "h0"], ["i0", "h1"]],
                                 [["i0", "i1"]]])
def test_cycles_and_backward_connections_are_refused(bad):
    with pytest.raises(ValueError, match="forward"):
        WannConfig(hidden=[{"id": 0, "activation": "relu"}, {"id": 1, "activation": "relu"}],
                   connections=bad)


def test_unknown_node_and_activation_are_named():
    with pytest.raises(ValueError, match="unknown node 'x3'"):
        WannConfig(connections=[["x3", "o0"]])
    with pytest.raises(ValueError, match="choose linear"):
        WannConfig(hidden=[{"id": 0, "activation": "swish"}])
    with pytest.raises(ValueError, match="the data has 2 inputs"):
        build_model(WannConfig(connections=[["i5", "o0"]]), (2,), 2)


def test_mutations_keep_the_network_acyclic_and_grow_as_described():
    rng = random.Random(0)
    acts = ["tanh", "relu", "sin", "gauss"]
    cfg = WannSearchConfig()
    g = minimal(6, 3, 0.3, rng)
    for _ in range(300):
        before = (len(g.hidden), len(g.connections))
        new = add_node(g, rng, acts)
        assert (len(new.hidden), len(new.connections)) == (before[0] + 1, before[1] + 1)
        new = add_connection(g, rng)
        assert len(new.connections) in (before[1], before[1] + 1)
        new = change_activation(g, rng, acts)
        assert new.connections == g.connections and len(new.hidden) == before[0]
        g = mutate(g, cfg, rng)
        conf = g.config()
        assert _acyclic(conf)
        build_model(conf, (6,), 3)  # the model accepts it (forward order checked)
    assert len(g.hidden) > 20


def test_random_topology_has_the_requested_size_and_is_acyclic():
    rng = random.Random(3)
    g = random_topology(10, 4, 5, 40, rng, ["tanh", "relu"])
    assert len(g.hidden) == 5 and len(g.connections) == 40 and _acyclic(g.config())


def test_sweep_accuracy_is_the_accuracy_at_each_weight():
    g = Genome(4, ["linear", "tanh"], [(0, "sin")], {("i0", "h0"), ("h0", "o1"),
                                                     ("i2", "o0"), ("bias", "o1")}, 1)
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 2, (30,), generator=torch.Generator().manual_seed(1))
    weights = [-1.0, 0.5, 2.0]
    got = sweep_accuracy(g, x, y, weights, 2)
    for w, acc in zip(weights, got):
        model = build_model(g.config(w), (4,), 2)
        with torch.no_grad():
            assert acc == pytest.approx((model(x).argmax(1) == y).double().mean().item())


def test_wann_step_reports_and_saves_the_found_network(tmp_path):
    raw = tiny_raw(data={"name": "digits", "limit": 300}, model={"name": "wann"},
                   stages=[{"wann": {"generations": 6, "population": 12, "elite": 2,
                                     "weights": [-1.0, 1.0], "random_topologies": 2}}])
    raw["evaluate"] = ["accuracy", "nll", "params", "latency"]
    rep = run_recipe(resolve(raw), tmp_path / "run")
    w = rep.stages[0].details["wann"]
    assert len(w["generations"]) == 6 and len(w["test_sweep"]["random"]) == 2
    best = [g["best_mean_accuracy"] for g in w["generations"]]
    assert best[-1] >= best[0]  # elitism: the best network is kept
    text = (tmp_path / "run" / "report.md").read_text()
    assert "Weight-agnostic networks" in text
    for name in ("wann_sweep_wann.png", "wann_history_wann.png", "wann_network_wann.png"):
        assert (tmp_path / "run" / "figures" / name).is_file()
    model = load_model(tmp_path / "run" / "models" / "wann")
    assert model.net.weight.item() == pytest.approx(w["tuning"]["weight"])
    assert len(model.spec["model"]["connections"]) == w["connections"]
