from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.errors import TrainingError
from nnopt.data.base import Split
from nnopt.train import Callback, ClassificationTask, TrainConfig, evaluate, fit, predict
from nnopt.train.fit import batches, make_optimizer, make_schedule


def blobs(n: int = 200, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    return Split(centers[y] + 0.5 * torch.randn(n, 2, generator=g), y)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


def test_fit_learns_and_records_history():
    model = net()
    state = fit(model, blobs(), val=blobs(60, 1), config=TrainConfig(epochs=5, lr=0.05))
    assert len(state.history) == 5
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    assert evaluate(model, blobs(100, 2))["accuracy"] > 0.9
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"} <= set(state.last)


def test_fit_is_deterministic_under_a_seed():
    a, b = net(), net()
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=16)
    fit(a, blobs(), config=cfg, seed=3)
    fit(b, blobs(), config=cfg, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_nan_loss_stops_with_stage_and_epoch():
    data = blobs()
    data.x[5] = float("nan")
    with pytest.raises(TrainingError, match=r"stage 'warmup': loss became nan at epoch 1, batch"):
        fit(net(), data, config=TrainConfig(epochs=1, batch_size=300), stage="warmup")


class Spy(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_fit_start(self, s): self.events.append("fit_start")
    def on_epoch_start(self, s): self.events.append("epoch_start")
    def on_batch_end(self, s): self.events.append("batch")
    def on_epoch_end(self, s): self.events.append("epoch_end")
    def on_fit_end(self, s): self.events.append("fit_end")


def test_callback_events_in_order():
    spy = Spy()
    fit(net(), blobs(64), config=TrainConfig(epochs=2, batch_size=32), callbacks=[spy])
    assert spy.events == (["fit_start"] + (["epoch_start", "batch", "batch", "epoch_end"] * 2)
                          + ["fit_end"])


class Sabotage(Callback):
    """Ruins the weights before epoch 3 so that the best epoch is known."""

    def on_epoch_start(self, s):
        if s.epoch == 2:
            with torch.no_grad():
                for p in s.model.parameters():
                    p.zero_()


def test_best_checkpoint_restores_best_validation_epoch():
    model = net()
    state = fit(model, blobs(), val=blobs(60, 1), callbacks=[Sabotage()],
                config=TrainConfig(epochs=3, lr=0.05, optimizer="sgd", schedule="none"))
    assert state.notes["best_epoch"] in (1, 2)
    assert evaluate(model, blobs(60, 1))["accuracy"] == pytest.approx(
        state.notes["best_val_accuracy"])


def test_early_stopping():
    class Stall(Callback):
        def on_epoch_end(self, s):
            s.history[-1]["val_accuracy"] = 0.5

    state = fit(net(), blobs(), val=blobs(60, 1), callbacks=[Stall()],
                config=TrainConfig(epochs=10, early_stopping=2, select_best=False))
    assert len(state.history) == 3 and state.notes["stopped_early_at_epoch"] == 3


def test_cosine_and_step_schedules_follow_their_formulas():
    p = [nn.Parameter(torch.zeros(1))]
    cfg = TrainConfig(epochs=4, lr=1.0, schedule="cosine")
    s = make_schedule(make_optimizer(p, cfg), cfg, steps_per_epoch=10)
    f = s.lr_lambdas[0]
    assert f(0) == 1.0 and f(20) == pytest.approx(0.5) and f(40) == pytest.approx(0.0)
    assert f(10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    cfg = TrainConfig(epochs=4, schedule="step", step_size=2, gamma=0.1, warmup_epochs=1)
    f = make_schedule(make_optimizer(p, cfg), cfg, 10).lr_lambdas[0]
    assert f(4) == pytest.approx(0.5) and f(15) == 1.0 and f(25) == pytest.approx(0.1)


def test_lr_scale_gives_parameters_a_multiple_of_the_learning_rate():
    a, b, c = (nn.Parameter(torch.ones(2)) for _ in range(3))
    cfg = TrainConfig(optimizer="sgd", lr=0.5, momentum=0.0, schedule="none")
    opt = make_optimizer([a, b, c], cfg, lr_scale={a: 0.1, c: 0.1})
    assert [g["lr"] for g in opt.param_groups] == [0.5, pytest.approx(0.05)]
    assert [len(g["params"]) for g in opt.param_groups] == [1, 2]  # b first: cfg.lr's group
    (a.sum() + b.sum() + c.sum()).backward()
    opt.step()  # plain SGD: w <- w - lr * scale * grad, the gradient being 1
    assert torch.allclose(b, torch.full((2,), 0.5)) and torch.allclose(a, torch.full((2,), 0.95))
    assert len(make_optimizer([a, b], cfg).param_groups) == 1


def test_label_smoothing_matches_its_formula():
    torch.manual_seed(0)
    logits, y, eps = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0]), 0.2
    model = lambda x: logits  # noqa: E731
    loss = ClassificationTask(label_smoothing=eps)(model, None, y)["loss"]
    logp = F.log_softmax(logits, 1)
    ref = -((1 - eps) * logp.gather(1, y[:, None]).squeeze(1) + eps * logp.mean(1)).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_batches_cover_every_index_once():
    idx = torch.cat(list(batches(103, 10, torch.Generator().manual_seed(0))))
    assert sorted(idx.tolist()) == list(range(103))
    assert [len(b) for b in batches(11, 5, None)] == [5, 5]  # a last batch of one is dropped


def test_predict_restores_training_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    a = predict(model, torch.ones(4, 2))
    assert model.training and torch.equal(a, predict(model, torch.ones(4, 2)))


class Probe(ClassificationTask):
    """Cross-entropy that records the dtype of the logits and the weights' memory format."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[torch.dtype] = set()
        self.channels_last: set[bool] = set()

    def __call__(self, model, x, y, index=None):
        out = super().__call__(model, x, y, index)
        self.dtypes.add(out["output"].dtype)
        self.channels_last.add(
            model[0].weight.is_contiguous(memory_format=torch.channels_last))
        return out


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def images(n: int = 64) -> Split:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    return Split(torch.rand(n, 1, 6, 6, generator=g) + y.view(-1, 1, 1, 1).float(), y)


def test_bf16_trains_under_autocast_with_fp32_weights():
    model, task = conv_net(), Probe()
    params = list(model.parameters())
    cfg = TrainConfig(epochs=30, lr=0.05)
    state = fit(model, images(), config=cfg.model_copy(update={"precision": "bf16"}), task=task)
    assert task.dtypes == {torch.bfloat16}  # the forward pass ran in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p is q for p, q in zip(params, model.parameters()))
    plain = Probe()
    ref = fit(conv_net(), images(), config=cfg, task=plain)
    assert plain.dtypes == {torch.float32}
    # the same descent as fp32, to bf16's precision (about 3 significant digits)
    first, last = ref.history[0]["train_loss"], ref.history[-1]["train_loss"]
    assert last < 0.8 * first
    assert state.history[-1]["train_loss"] == pytest.approx(last, rel=0.01)


def test_channels_last_trains_in_that_format_and_restores_the_default():
    model, task = conv_net(), Probe()
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=16, channels_last=True)
    fit(model, images(), config=cfg, task=task)
    assert task.channels_last == {True}
    assert model[0].weight.is_contiguous()  # what safetensors and export expect
    # the memory format changes the layout, not the arithmetic: the same training either way
    ref = conv_net()
    fit(ref, images(), config=cfg.model_copy(update={"channels_last": False}))
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(model.parameters(),
                                                                ref.parameters()))
