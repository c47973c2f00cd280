"""Where and how training computes: the device option (a run's and a stage's), mixed precision
(fp16 with loss scaling, bf16), torch.compile, and the DataLoader input pipeline with worker
processes. This machine has no GPU: the CUDA side is checked by benchmarks/gpu_training.py on a
lent one; here, a CUDA device that is missing is one clear line, and every option that runs on the
CPU gives the results of the plain loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.cli import main
from nnopt.core.compute import (
    compute_device,
    home,
    movable,
    on_device,
    placed,
    predict,
    resolve_device,
)
from nnopt.core.errors import NnoptError, RecipeError
from nnopt.data.base import Split
from nnopt.recipe import resolve
from nnopt.train import TrainConfig, fit

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


def _data(n: int = 120) -> Split:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return Split(x, (x.mean((1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 1).long())


def _model(dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(3)
    # no conv bias before batch norm: its gradient is 0 up to rounding, which Adam amplifies
    return nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(dropout),
                         nn.Flatten(), nn.Linear(144, 3))


def _train(dropout: float = 0.2, **options) -> tuple[nn.Module, list[dict]]:
    model = _model(dropout)
    config = TrainConfig(epochs=2, batch_size=25, lr=0.01, select_best=False, **options)
    state = fit(model, _data(), config=config, val=_data(30), seed=5)
    return model, state


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.state_dict().values(),
                                                          b.state_dict().values(), strict=True)
               if p.is_floating_point())


def test_devices_resolve_here_and_a_missing_gpu_is_one_clear_line():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        for name in ("cuda", "cuda:1"):
            with pytest.raises(NnoptError, match="this machine has no CUDA device"):
                resolve_device(name)
    with pytest.raises(NnoptError, match="write auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_placed_moves_for_the_block_and_back_and_leaves_int8_kernels_alone():
    model = _model()
    with on_device(torch.device("cpu")) as dev:
        assert compute_device() == dev
        with placed(model) as where:
            assert where == dev == home(model)
    assert movable(model)
    packed = torch.ao.nn.quantized.Linear(4, 2)
    assert not movable(nn.Sequential(packed)) and not movable(nn.ReLU())


def test_predict_moves_the_model_outside_inference_mode():
    model = _model()
    predict(model, _data().x)
    fit(model, _data(), config=TrainConfig(epochs=1, batch_size=25), seed=0)  # still trainable
    assert not any(p.is_inference() for p in model.parameters())


def test_loader_workers_give_the_same_training_as_the_loop():
    plain, s0 = _train()
    workers, s2 = _train(workers=2)
    assert _max_diff(plain, workers) == 0.0
    assert [h["train_loss"] for h in s0.history] == [h["train_loss"] for h in s2.history]
    assert s2.notes["compute"] == "cpu, fp32, 2 DataLoader workers"
    assert s0.history[0]["examples"] == 120  # the throughput of the report counts these


def test_split_dataset_fetches_a_batch_in_one_indexing():
    data = _data(10)
    ds = data.dataset()
    x, y, idx = ds.__getitems__([3, 1])
    assert torch.equal(x, data.x[[3, 1]]) and torch.equal(y, data.y[[3, 1]])
    assert idx.tolist() == [3, 1] and len(ds) == 10 and ds[2][2] == 2


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_trains_close_to_fp32(precision):
    full, s32 = _train()
    half, s16 = _train(precision=precision)
    assert s16.notes["compute"] == f"cpu, {precision} autocast"
    assert all(p.dtype == torch.float32 for p in half.parameters())  # the weights stay fp32
    tol = 0.02 if precision == "fp16" else 0.05  # 11 against 8 significant bits
    for a, b in zip(s32.history, s16.history, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < tol * a["train_loss"]
    assert 0 < _max_diff(full, half) < 0.1  # Adam's steps are lr-sized: 10 of 0.01
    x = _data().x
    agree = (predict(full, x).argmax(1) == predict(half, x).argmax(1)).double().mean()
    assert agree >= 0.95


def test_fp16_loss_scaling_skips_an_overflowing_step_and_trains_on():
    class Spike(nn.Module):  # one batch's loss overflows fp16 gradients
        def __init__(self) -> None:
            super().__init__()
            self.net = _model()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            out = self.net(x)
            return out * 300 if self.calls == 2 else out  # x 2^16: past fp16's 65504

    model = Spike()
    before = [p.detach().clone() for p in model.parameters()]
    state = fit(model, _data(), config=TrainConfig(epochs=1, batch_size=25, lr=0.01,
                                                   precision="fp16", select_best=False), seed=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert state.notes["fp16_loss_scale"] == 2.0 ** 15  # the start, 2^16, halved once


def test_torch_compile_trains_like_eager():
    # without dropout: compiled code draws its dropout masks from its own random stream
    eager, s0 = _train(dropout=0.0)
    compiled, s1 = _train(dropout=0.0, compile=True)
    assert _max_diff(eager, compiled) < 1e-4
    assert s1.notes["compute"] == "cpu, fp32, torch.compile"
    assert not any(k.startswith("_orig_mod") for k in compiled.state_dict())


def test_a_run_or_stage_device_is_checked_before_anything_is_written(tmp_path, write_recipe,
                                                                     capsys):
    r = resolve(tiny_raw(device="cpu", stages=[{"train": {"epochs": 1}, "device": "cpu"}]))
    assert r.recipe.device == "cpu" and r.stages[0].device == "cpu"
    assert r.to_dict()["stages"][0]["device"] == "cpu"
    with pytest.raises(RecipeError, match="device 'gpu': write auto, cpu, cuda or cuda:N"):
        resolve(tiny_raw(stages=[{"train": {"epochs": 1}, "device": "gpu"}]))
    with pytest.raises(RecipeError, match="device"):
        resolve(tiny_raw(device="tpu"))
    if torch.cuda.is_available():
        return
    for raw in (tiny_raw(device="cuda"),
                tiny_raw(stages=[{"train": {"epochs": 1}, "device": "cuda:0"}])):
        recipe = write_recipe(raw)
        assert main(["run", str(recipe), "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "this machine has no CUDA device" in err[0]
        assert not (tmp_path / "o").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


def test_a_run_records_its_device_and_how_each_stage_trained(tmp_path, write_recipe):
    import json

    recipe = write_recipe(tiny_raw(evaluate=["accuracy"], stages=[
        {"train": {"epochs": 1, "batch_size": 32, "workers": 1}, "device": "cpu"}]))
    assert main(["run", str(recipe), "--out", str(tmp_path / "o"), "--quiet",
                 "--set", "device=cpu"]) == 0
    res = json.loads((tmp_path / "o/results.json").read_text())
    assert res["environment"]["device"] == "cpu" and res["recipe"]["device"] == "cpu"
    assert res["stages"][0]["details"]["training"]["compute"] == "cpu, fp32, 1 DataLoader workers"
    report = (tmp_path / "o/report.md").read_text()
    assert "examples/s" in report and "cpu, fp32, 1 DataLoader workers" in report


def test_the_loader_draws_nothing_from_the_global_random_stream():
    # the global generator is dropout's: a DataLoader seeding its workers from it would shift
    # every dropout mask after it (a model without dropout leaves the stream as seeded)
    for workers in (0, 1):
        fit(_model(dropout=0.0), _data(), seed=7,
            config=TrainConfig(epochs=2, batch_size=25, workers=workers, select_best=False))
        after = torch.rand(3)
        torch.manual_seed(7)
        assert torch.equal(after, torch.rand(3))


def test_a_fit_with_loader_workers_leaves_the_sigchld_handler_as_it_was():
    # torch's handler for its workers, left in place for good, made a later subprocess wait in
    # the same process crash (SIGSEGV after ExecuTorch's quantize step)
    import signal

    before = signal.getsignal(signal.SIGCHLD)
    _train(workers=1)
    assert signal.getsignal(signal.SIGCHLD) is before
    _train(workers=1)  # and the next loader with workers installs torch's again, and it goes
    assert signal.getsignal(signal.SIGCHLD) is before
