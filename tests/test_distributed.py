"""Data-parallel fit() on torch.distributed (gloo, CPU): two processes, each on its shard of every
global batch with gradients averaged, end with the parameters one process reaches on the whole
batches; a task that is not data-parallel runs replicated and equals one process too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nnopt.data.base import Split
from nnopt.train import TrainConfig, fit

WORLD = 2


def _data() -> Split:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(99, 12, generator=g)
    return Split(x, (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long())


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))


def _train(config: TrainConfig) -> tuple[nn.Module, dict]:
    model = _model()
    state = fit(model, _data(), config=config, val=_data().take(torch.arange(30)), seed=5)
    return model, state


def _worker(rank: int, folder: str, config: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=WORLD)
    try:
        model, state = _train(TrainConfig(**config))
        torch.save({"params": [p.detach() for p in model.parameters()],
                    "history": state.history, "notes": state.notes},
                   f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_parallel(tmp_path: Path, config: dict) -> list[dict]:
    mp.start_processes(_worker, args=(str(tmp_path), config), nprocs=WORLD,
                       start_method="spawn", join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("config", [
    # 99 examples, global batches of 33: shards of 17 and 16, gradients weighted by shard size
    {"epochs": 2, "batch_size": 33, "optimizer": "sgd", "lr": 0.1, "select_best": False},
    {"epochs": 2, "batch_size": 33, "optimizer": "adamw", "lr": 0.01, "grad_clip": 0.5},
])
def test_two_processes_equal_one_on_the_whole_batch(tmp_path, config):
    one, state = _train(TrainConfig(**config))
    ranks = _run_parallel(tmp_path, config)
    for r in ranks:
        for a, b in zip(one.parameters(), r["params"], strict=True):
            assert (a.detach() - b).abs().max().item() < 1e-5
        assert "data-parallel over 2 processes" in r["notes"]["distributed"]
        # the logged epoch loss is the whole batch's, as in one process
        for h1, h2 in zip(state.history, r["history"], strict=True):
            assert abs(h1["train_loss"] - h2["train_loss"]) < 1e-5
    assert "distributed" not in state.notes


def test_a_task_that_is_not_data_parallel_runs_replicated(tmp_path):
    config = {"epochs": 1, "batch_size": 33, "lr": 0.01, "task": {"name": "elr"}}
    one, _ = _train(TrainConfig(**config))
    for r in _run_parallel(tmp_path, config):
        assert "replicated on 2 processes" in r["notes"]["distributed"]
        for a, b in zip(one.parameters(), r["params"], strict=True):
            assert torch.equal(a.detach(), b)


def _nnopt(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "nnopt", *args]


def test_nproc_2_trains_data_parallel_and_process_0_alone_writes(tmp_path):
    import json
    import subprocess

    import yaml

    from conftest import tiny_raw

    raw = tiny_raw(evaluate=["accuracy", "size"])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run(_nnopt("run", "r.yaml", "--out", "o", "--nproc", "2", "--quiet"),
                          cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "r.yaml"]  # nothing else
    res = json.loads((tmp_path / "o/results.json").read_text())
    assert res["environment"]["world_size"] == 2 and res["environment"]["backend"] == "gloo"
    notes = res["stages"][0]["details"]["training"]
    assert notes["distributed"].startswith("data-parallel over 2 processes")
    assert done.stdout.count("report: ") == 1  # process 0 alone prints
    # the same recipe in one process (this one), and the two compared by nnopt report
    from nnopt.cli import main

    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    assert main(["report", str(tmp_path / "one"), str(tmp_path / "o"),
                 "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp/report.md").read_text().replace(str(tmp_path) + "/", "")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.split("## How each run computed")[1].split("\n## ")[0].splitlines()
            if line.startswith("| one") or line.startswith("| o ")}
    assert rows["one"][:3] == ["cpu", "1", "-"] and rows["o"][:3] == ["cpu", "2", "gloo"]
    assert "o (2 processes) trained in" in md and "for one (1 process)" in md


def test_a_sweep_runs_each_variant_on_nproc_processes(tmp_path):
    import json
    import subprocess

    import yaml

    from conftest import tiny_raw

    raw = tiny_raw(evaluate=["accuracy"])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run(_nnopt("sweep", "r.yaml", "--grid", "seed=0", "--out", "sw",
                                 "--nproc", "2"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (variant,) = (tmp_path / "sw/variants").iterdir()
    res = json.loads((variant / "results.json").read_text())
    assert res["environment"]["world_size"] == 2
    assert "data-parallel over 2" in res["stages"][0]["details"]["training"]["distributed"]


def test_an_interrupted_distributed_run_leaves_nothing(tmp_path):
    import signal
    import subprocess
    import time

    import yaml

    from conftest import tiny_raw

    raw = tiny_raw(stages=[{"train": {"epochs": 100000, "batch_size": 32}}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen(_nnopt("run", "r.yaml", "--out", "o", "--nproc", "2", "--quiet"),
                            cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any(p.name.startswith(".o.partial") for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None, "the run never started"
        time.sleep(0.2)
    time.sleep(3)  # inside training, both processes in collectives
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "no partial output was kept" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_bad_nproc_input_is_one_line_before_any_process_starts(tmp_path, write_recipe):
    from conftest import tiny_raw
    from nnopt.cli import main

    recipe = write_recipe(tiny_raw())
    assert main(["run", str(recipe), "--out", str(tmp_path / "o"), "--nproc", "0"]) == 2
    (tmp_path / "file").write_text("mine")
    assert main(["run", str(recipe), "--out", str(tmp_path / "file"), "--nproc", "2"]) == 2
    assert (tmp_path / "file").read_text() == "mine"
