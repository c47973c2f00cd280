"""Noise-robust losses against their paper formulas on hand-computed cases, and mixup."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnopt.train.losses import LossConfig, bootstrap, gce, mixup_batch, per_example, sce
from nnopt.train.task import ClassificationTask

# probabilities (0.5, 0.25, 0.25)
LOGITS = torch.log(torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64))


def test_gce_formula_and_its_limits():
    y = torch.tensor([0])
    assert gce(LOGITS, y, q=0.5).item() == pytest.approx((1 - math.sqrt(0.5)) / 0.5)
    assert gce(LOGITS, y, q=1.0).item() == pytest.approx(0.5)  # q = 1: MAE, 1 - p_y
    assert gce(LOGITS, y, q=1e-5).item() == pytest.approx(math.log(2), abs=1e-4)  # q -> 0: CE


def test_sce_is_ce_plus_reverse_ce_with_log_zero_as_a():
    y = torch.tensor([0])
    # RCE = -sum_k p_k log y_k = -(0.5 * 0 + 0.25 * (-4) + 0.25 * (-4)) = 2
    assert sce(LOGITS, y, alpha=0.1, beta=1.0).item() == pytest.approx(0.1 * math.log(2) + 2.0)
    assert sce(LOGITS, y, alpha=0.0, beta=1.0, a=-2.0).item() == pytest.approx(1.0)


def test_bootstrap_soft_and_hard():
    soft = bootstrap(LOGITS, torch.tensor([0]), beta=0.95, hard=False).item()
    assert soft == pytest.approx(0.975 * math.log(2) + 0.025 * math.log(4))
    # hard: the arg-max (class 0) takes 1 - beta of the target when the label says class 1
    hard = bootstrap(LOGITS, torch.tensor([1]), beta=0.8, hard=True).item()
    assert hard == pytest.approx(0.8 * math.log(4) + 0.2 * math.log(2))


def test_per_example_dispatch_and_the_ce_default():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(per_example(LossConfig(), logits, y),
                               F.cross_entropy(logits, y, reduction="none"))
    default = per_example(LossConfig(name="bootstrap_hard"), logits, y)
    torch.testing.assert_close(default, bootstrap(logits, y, 0.8, True))
    task = ClassificationTask(loss=LossConfig(name="gce", q=0.3))
    out = task(torch.nn.Identity(), logits, y)
    torch.testing.assert_close(out["loss"], gce(logits, y, 0.3).mean())
    with pytest.raises(ValueError, match="label_smoothing applies to the ce loss"):
        ClassificationTask(label_smoothing=0.1, loss=LossConfig(name="sce"))


def test_mixup_mixes_with_a_permutation():
    torch.manual_seed(0)
    x = torch.rand(8, 3)
    mixed, perm, lam = mixup_batch(x, 0.4)
    assert 0 <= lam <= 1 and sorted(perm.tolist()) == list(range(8))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    task = ClassificationTask(mixup=0.4)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    torch.manual_seed(1)
    out = task(torch.nn.Identity(), x, y)
    torch.manual_seed(1)
    m2, p2, l2 = mixup_batch(x, 0.4)
    expected = (l2 * F.cross_entropy(m2, y) + (1 - l2) * F.cross_entropy(m2, y[p2]))
    torch.testing.assert_close(out["loss"], expected)


def test_coteaching_schedule_is_the_papers():
    from nnopt.learn.noisy.coteaching import CoteachingConfig, forget_schedule

    sched = forget_schedule(CoteachingConfig(forget_rate=0.4, num_gradual=5), 8)
    assert sched == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4])
    sched = forget_schedule(CoteachingConfig(forget_rate=0.5, num_gradual=3, exponent=2), 4)
    assert sched[:3] == pytest.approx([0.0, 0.125, 0.25]) and sched[3] == 0.5


def test_coteaching_exchanges_small_loss_examples():
    from torch import nn

    from nnopt.learn.noisy.coteaching import CoteachingConfig, CoteachingTask

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    task = CoteachingTask(CoteachingConfig(forget_rate=0.5, num_gradual=1), epochs=2,
                          examples_per_epoch=8)
    peer = task.setup(model)[0]
    assert not torch.equal(peer.weight, model.weight)  # a different start
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    out = task(model, x, y)
    assert out["forget_rate"] == 0.5
    l1 = F.cross_entropy(model(x), y, reduction="none")
    l2 = F.cross_entropy(peer(x), y, reduction="none")
    keep1, keep2 = torch.argsort(l1)[:4], torch.argsort(l2)[:4]
    torch.testing.assert_close(out["loss"], l1[keep2].mean() + l2[keep1].mean())
    # gradients reach each network only through the examples its peer kept
    model.zero_grad()
    out["loss"].backward()
    ref = nn.Linear(4, 3)
    ref.load_state_dict(model.state_dict())
    F.cross_entropy(ref(x[keep2]), y[keep2]).backward()
    torch.testing.assert_close(model.weight.grad, ref.weight.grad)


def test_coteaching_trains_in_a_recipe(tmp_path):
    from conftest import tiny_raw
    from nnopt.recipe import resolve
    from nnopt.runner import run_recipe

    raw = tiny_raw(stages=[{"train": {"epochs": 2, "batch_size": 32,
                                      "task": {"name": "coteaching", "forget_rate": 0.3,
                                                   "num_gradual": 2}}}])
    raw["data"]["label_noise"] = {"rate": 0.3}
    raw["evaluate"] = ["accuracy"]
    result = run_recipe(resolve(raw), tmp_path)
    assert result.data["label_noise"]["realised_train"] > 0
    assert len(result.stages[0].details["history"]) == 2


def test_elr_penalty_and_target_update_by_hand():
    from nnopt.learn.noisy.elr import ElrConfig, ElrTask, elr_penalty

    p = torch.tensor([[0.5, 0.3, 0.2]])
    t = torch.tensor([[0.2, 0.2, 0.6]])
    # <p, t> = 0.1 + 0.06 + 0.12 = 0.28
    assert elr_penalty(p, t).item() == pytest.approx(math.log(0.72))

    class Const(nn.Module):
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = nn.Parameter(logits)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits.expand(len(x), -1)

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    task = ElrTask(ElrConfig(lam=3.0, beta=0.7), examples=4)
    model = Const(logits.clone())
    x, y, idx = torch.zeros(2, 1), torch.tensor([1, 1]), torch.tensor([0, 2])
    out = task(model, x, y, index=idx)
    q = logits.softmax(1).clamp(1e-4, 1 - 1e-4)
    want_t = 0.3 * q / q.sum()
    torch.testing.assert_close(task.target[0], want_t[0])
    torch.testing.assert_close(task.target[2], want_t[0])
    assert task.target[1].abs().sum() == 0 and task.target[3].abs().sum() == 0
    want = F.cross_entropy(logits, y[:1]) + 3.0 * torch.log(1 - (q * want_t).sum())
    torch.testing.assert_close(out["loss"], want)
    task(model, x, y, index=idx)  # the second visit averages with the first
    torch.testing.assert_close(task.target[0], 0.7 * want_t[0] + 0.3 * q[0] / q.sum())
    with pytest.raises(ValueError, match="index"):
        task(model, x, y)


def test_loss_replacing_tasks_refuse_to_combine():
    from pydantic import ValidationError

    from nnopt.core.errors import TrainingError
    from nnopt.train.fit import TrainConfig, make_task
    from nnopt.train.task import ClassificationTask

    # one task block names one objective: another task's options are unknown fields
    with pytest.raises(ValidationError, match="loss"):
        TrainConfig(task={"name": "elr", "loss": {"name": "gce"}})
    with pytest.raises(ValidationError, match="mixup"):
        TrainConfig(task={"name": "coteaching", "mixup": 0.2})
    with pytest.raises(ValidationError, match="unknown task.*classify"):
        TrainConfig(task={"name": "elrr"})
    # a step's own objective (distillation) cannot be combined with a loss-replacing task
    with pytest.raises(TrainingError, match="task 'elr' replaces the loss.*ClassificationTask"):
        make_task(TrainConfig(task={"name": "elr"}), ClassificationTask(), 10, "s", 0)
    assert type(make_task(TrainConfig(task={"name": "elr"}), None, 10, "s", 0)).__name__ == \
        "ElrTask"
    # a recipe written before the task block is told where its field went
    with pytest.raises(ValidationError, match=r"task: \{name: coteaching"):
        TrainConfig(coteaching={"forget_rate": 0.3})
    with pytest.raises(ValidationError, match=r"task: \{name: classify, label_smoothing"):
        TrainConfig(label_smoothing=0.1)
