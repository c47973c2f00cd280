"""Architecture search: Pareto sorting and hypervolume against brute force and Optuna, the macro
space (validation, sampling, mutation), every strategy's ask/tell, the trial store (resume,
settings check, a cut last line), constraints in the pick, and the nas step in a recipe."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

from conftest import tiny_raw
from nnopt.core.errors import NnoptError, RecipeError
from nnopt.recipe import resolve
from nnopt.runner import prepare, run_recipe
from nnopt.search import trial as trial_mod
from nnopt.search.nas import NasConfig, pick, run_search
from nnopt.search.pareto import dominates, hypervolume, pareto_front, pareto_ranks
from nnopt.search.space import MacroSpace
from nnopt.search.strategies import make_strategy
from nnopt.search.trial import TrialResult, direction, metric_for

OPTS = {"population": 4, "sample": 2}


def test_pareto_ranks_match_brute_force():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 5, size=(30, 2)).tolist()
    ranks = pareto_ranks(pts)
    for i, p in enumerate(pts):
        # rank 0 exactly when no point dominates it; each point of rank r>0 is dominated by one
        # of rank r-1 and by none of rank >= r
        dom = [j for j, q in enumerate(pts) if dominates(q, p)]
        assert (ranks[i] == 0) == (not dom)
        if ranks[i] > 0:
            assert any(ranks[j] == ranks[i] - 1 for j in dom)
            assert all(ranks[j] < ranks[i] for j in dom)
    assert pareto_front([[1, 2], [2, 1], [2, 2], [1, 2]]) == [0, 1, 3]


def test_hypervolume_by_hand_and_against_optuna():
    from optuna._hypervolume import compute_hypervolume

    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == pytest.approx(3.0)  # 2x1 + 1x2 - 1x1
    assert hypervolume([[4, 4]], [3, 3]) == 0.0  # beyond the reference: nothing
    assert hypervolume([[1, 1, 1]], [2, 3, 4]) == pytest.approx(6.0)
    rng = np.random.default_rng(1)
    for dims in (2, 3):
        pts = rng.random((12, dims))
        ref = np.ones(dims) * 1.1
        assert hypervolume(pts.tolist(), ref.tolist()) == pytest.approx(
            compute_hypervolume(pts, ref), rel=1e-9)


def test_space_validates_fields_and_values():
    with pytest.raises(ValueError, match="unknown cnn field 'widht'.*did you mean 'width'"):
        MacroSpace(family="cnn", choices={"widht": [8]})
    with pytest.raises(ValueError, match="choices.depth: value 9"):
        MacroSpace(family="cnn", choices={"depth": [1, 9]})
    with pytest.raises(ValueError, match="unknown search family 'vgg'"):
        MacroSpace(family="vgg", choices={"width": [8]})
    with pytest.raises(ValueError, match="both searched and fixed"):
        MacroSpace(choices={"width": [8]}, fixed={"width": 4})


def test_space_samples_and_mutates_within_its_choices():
    space = MacroSpace(family="cnn", choices={"width": [4, 8, 16], "depth": [1, 2],
                                              "kernel_size": [3]})
    assert space.size == 6
    rng = random.Random(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert all(arch[k] in v for k, v in space.choices.items())
        child = space.mutate(arch, rng)
        changed = [k for k in arch if arch[k] != child[k]]
        assert len(changed) == 1 and changed[0] != "kernel_size"  # one field, never a fixed one
        assert space.config(child).width == child["width"]


def _fitness(arch):  # a fake objective pair: accuracy grows with width, latency too
    return [-(arch["width"] / 16 - 0.1 * arch["depth"]), arch["width"] * arch["depth"]]


@pytest.mark.parametrize("name", ["random", "evolution", "tpe", "nsga2"])
def test_strategies_propose_in_space_and_accept_results(name, tmp_path):
    space = MacroSpace(family="cnn", choices={"width": [4, 8, 16], "depth": [1, 2, 3]})
    k = 1 if name == "tpe" else 2
    strat = make_strategy(name, space, k, 0, OPTS, tmp_path if "a" in name else None)
    seen = []
    for _ in range(12):
        batch = [strat.ask() for _ in range(2)]  # asked before told, as parallel workers do
        for arch in batch:
            assert all(arch[f] in v for f, v in space.choices.items())
            strat.tell(arch, _fitness(arch)[:k])
            seen.append(space.key(arch))
    if name == "random":  # no repeat before the 9 architectures are exhausted
        assert len(set(seen[:9])) == 9
    strat.tell({"width": 4, "depth": 1}, None)  # a failed trial (never asked) is accepted


def test_evolution_mutates_a_member_of_its_population():
    space = MacroSpace(family="cnn", choices={"width": [4, 8, 16, 32], "depth": [1, 2, 3]})
    strat = make_strategy("evolution", space, 2, 0, OPTS)
    for _ in range(4):  # the random initial population
        a = strat.ask()
        strat.tell(a, _fitness(a))
    members = [m[0] for m in strat.population]
    child = strat.ask()
    assert any(sum(child[f] != m[f] for f in child) == 1 for m in members)


def test_tpe_refuses_several_objectives():
    with pytest.raises(NnoptError, match="nsga2"):
        make_strategy("tpe", MacroSpace(), 2, 0, OPTS)


def test_objective_names_map_to_metrics():
    assert metric_for("latency_ms/edge") == "latency"
    assert metric_for("size_bytes") == "size"
    assert metric_for("robust_accuracy/pgd") == "robust"
    assert direction("accuracy") == "max" and direction("latency_ms/x") == "min"
    with pytest.raises(RecipeError, match="unknown objective 'acuracy'.*did you mean 'accuracy'"):
        metric_for("acuracy")


def _result(n, acc, lat):
    return TrialResult(n, {"width": n}, {"accuracy": acc, "latency_ms/cpu": lat}, 0.1, 0, {})


def test_pick_takes_the_front_and_honours_constraints():
    cfg = NasConfig(objectives=["accuracy", "latency_ms/cpu"])
    rs = [_result(0, 0.9, 5.0), _result(1, 0.8, 1.0), _result(2, 0.7, 2.0)]
    front, best = pick(rs, cfg)
    assert front == [0, 1] and best.number == 0
    cfg = NasConfig(objectives=["accuracy", "latency_ms/cpu"], constraints={"latency_ms/cpu": 2})
    assert pick(rs, cfg)[1].number == 1
    cfg = NasConfig(objectives=["accuracy"], constraints={"latency_ms/cpu": 0.5})
    with pytest.raises(NnoptError, match="no trial meets"):
        pick(rs, cfg)


def _search_ctx(tmp_path):
    from nnopt.context import RunContext

    raw = tiny_raw(stages=[])
    resolved = resolve(raw)
    data, _ = prepare(resolved)
    return RunContext(recipe=resolved, data=data, out_dir=tmp_path / "out", seed=0)


def _cfg(trials, **kw):
    return NasConfig(space=MacroSpace(choices={"width": [2, 4, 8], "depth": [1, 2]},
                                      fixed={"hidden": 0}),
                     strategy="evolution", population=2, sample=2, trials=trials,
                     objectives=["accuracy", "params"],
                     proxy={"train": {"epochs": 1, "batch_size": 32, "select_best": False},
                            "limit": 64}, **kw)


def test_search_resumes_from_its_store(tmp_path, monkeypatch):
    ctx, store = _search_ctx(tmp_path), tmp_path / "store"
    first = run_search(_cfg(3), ctx, store).trials
    lines = (store / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "settings" in json.loads(lines[0])
    calls = []
    real = trial_mod.evaluate_trial

    def counting(job):
        calls.append(job.number)
        return real(job)

    monkeypatch.setattr("nnopt.search.nas.evaluate_trial", counting)
    # an interruption cut the last record in half: it is dropped and that trial runs again
    (store / "trials.jsonl").write_text("\n".join(lines[:3] + [lines[3][:20]]) + "\n")
    again = run_search(_cfg(5), ctx, store).trials
    assert calls == [2, 3, 4]
    assert [r.metrics for r in again[:2]] == [r.metrics for r in first[:2]]
    assert again[2].arch == first[2].arch  # the replayed strategy proposes the same trial 2
    assert again[2].metrics["params"] == first[2].metrics["params"]
    # a fresh search without a store gives the same first trials: trials are seeded
    fresh = run_search(_cfg(3), ctx, None).trials
    assert [r.arch for r in fresh] == [r.arch for r in first]
    assert [r.metrics["accuracy"] for r in fresh] == [r.metrics["accuracy"] for r in first]
    with pytest.raises(NnoptError, match="other settings"):
        run_search(_cfg(5).model_copy(update={"strategy": "random"}), ctx, store)


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    ctx = _search_ctx(tmp_path)
    # depth 3 pools the 8x8 synthetic inputs to 1x1, depth 4 would be below: that trial fails
    cfg = _cfg(4).model_copy(update={"space": MacroSpace(choices={"depth": [3, 4]},
                                                         fixed={"width": 2, "hidden": 0})})
    cfg = cfg.model_copy(update={"strategy": "random"})
    results = run_search(cfg, ctx, None).trials
    failed = [r for r in results if r.error]
    assert failed and all("pools" in r.error for r in failed)
    assert all(r.metrics == {} for r in failed)
    assert pick(results, cfg)[1].arch["depth"] == 3


def test_nas_stage_in_a_recipe_reports_the_front(tmp_path):
    raw = tiny_raw(stages=[{"nas": {
        "space": {"choices": {"width": [2, 4], "depth": [1, 2]}, "fixed": {"hidden": 0}},
        "strategy": "nsga2", "population": 2, "trials": 3,
        "objectives": ["accuracy", "latency_ms/cpu"],
        "proxy": {"train": {"epochs": 1, "batch_size": 32, "select_best": False}, "limit": 64},
        "retrain": {"epochs": 1, "batch_size": 32}}}])
    rep = run_recipe(resolve(raw), tmp_path / "run")
    s = rep.stages[0].details["search"]
    assert len(s["trials"]) == 3 and s["picked"] in s["front"]
    assert all("latency_ms/cpu" in t["metrics"] for t in s["trials"])
    assert (tmp_path / "run.trials" / "nas" / "trials.jsonl").is_file()
    text = (tmp_path / "run" / "report.md").read_text()
    assert "Architecture search" in text and "search_front_nas.png" in text
    # the stage's model is the picked architecture, rebuilt from its saved spec
    from nnopt.models.saving import load_model

    spec = load_model(tmp_path / "run" / "models" / "nas").spec
    assert {k: spec["model"][k] for k in s["picked_arch"]} == s["picked_arch"]


def test_finalists_are_retrained_and_the_best_on_validation_is_the_pick(tmp_path):
    raw = tiny_raw(stages=[{"nas": {
        "space": {"choices": {"width": [2, 4], "depth": [1, 2]}, "fixed": {"hidden": 0}},
        "strategy": "random", "trials": 3, "finalists": 2,
        "objectives": ["accuracy", "params"],
        "proxy": {"train": {"epochs": 1, "batch_size": 32, "select_best": False}, "limit": 64},
        "retrain": {"epochs": 1, "batch_size": 32}}}])
    rep = run_recipe(resolve(raw), tmp_path / "run")
    s = rep.stages[0].details["search"]
    finals = s["finalists"]
    by_proxy = sorted((t for t in s["trials"] if not t["error"]),
                      key=lambda t: (-t["metrics"]["accuracy"], t["metrics"]["params"]))
    assert [f["number"] for f in finals] == [t["number"] for t in by_proxy[:2]]
    best = max(finals, key=lambda f: f["retrained_val"])
    assert s["picked"] == best["number"] and s["picked_arch"] == best["arch"]
    assert "retrained validation accuracy" in (tmp_path / "run" / "report.md").read_text()
    with pytest.raises(ValueError, match="first objective must be 'accuracy'"):
        NasConfig(objectives=["params", "accuracy"], finalists=2)


def test_all_architectures_of_a_small_space_are_valid_models():
    space = MacroSpace(choices={"width": [2, 4], "depth": [1, 2], "kernel_size": [3, 5]})
    for combo in itertools.product(*space.choices.values()):
        assert space.config(dict(zip(space.choices, combo))).name == "cnn"


def test_reference_constraints_use_the_reference_models_measured_value(tmp_path, monkeypatch):
    ctx = _search_ctx(tmp_path)
    cfg = _cfg(4, reference={"name": "cnn", "width": 4, "depth": 1, "hidden": 0},
               constraints={"params": "reference"})
    found = run_search(cfg, ctx, tmp_path / "store")
    ref = found.reference
    assert ref is not None and ref.number == -1 and ref.metrics["params"] > 0
    front, best = pick(found.trials, cfg, ref)
    assert best.metrics["params"] <= ref.metrics["params"]
    ran = []
    monkeypatch.setattr("nnopt.search.nas.evaluate_trial", lambda job: ran.append(job.number))
    again = run_search(cfg, ctx, tmp_path / "store")  # resumed: nothing runs again
    assert ran == [] and again.reference.metrics == ref.metrics and len(again.trials) == 4
    with pytest.raises(NnoptError, match="set 'reference'"):
        pick(found.trials, _cfg(4, constraints={"params": "reference"}), None)


def test_predicted_latency_objective_and_its_reported_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NNOPT_CACHE", str(tmp_path / "cache"))
    raw = tiny_raw(stages=[{"nas": {
        "space": {"choices": {"width": [2, 4]}, "fixed": {"hidden": 0, "depth": 1}},
        "strategy": "random", "trials": 2,
        "objectives": ["accuracy", "predicted_latency_ms/cpu"],
        "constraints": {"latency_ms/cpu": 1e9},
        "proxy": {"train": {"epochs": 1, "batch_size": 32, "select_best": False}, "limit": 32},
        "retrain": {"epochs": 1, "batch_size": 32}}}])
    rep = run_recipe(resolve(raw), tmp_path / "run")
    trials = rep.stages[0].details["search"]["trials"]
    assert all(t["metrics"]["predicted_latency_ms/cpu"] > 0 for t in trials)
    assert all({"params", "macs", "latency_ms/cpu"} <= set(t["metrics"]) for t in trials)
    assert list((tmp_path / "cache" / "latency-lut").glob("torch-*.json"))
    assert "mean absolute percentage error" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("name", ["tpe", "nsga2"])
def test_optuna_strategies_do_not_spend_trials_on_measured_architectures(name):
    space = MacroSpace(family="cnn", choices={"width": [4, 8, 16], "depth": [1, 2, 3]})
    k = 1 if name == "tpe" else 2
    strat = make_strategy(name, space, k, 0, OPTS)
    seen = []
    for _ in range(9):  # one at a time: each is told before the next is asked
        arch = strat.ask()
        seen.append(space.key(arch))
        strat.tell(arch, _fitness(arch)[:k])
    assert len(set(seen)) == 9  # the whole space, no repeat
    # the repeats the sampler proposed were told their known values, not evaluated again
    assert len(strat.study.trials) >= 9
