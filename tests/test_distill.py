"""Distillation: losses against their paper formulas, the task's composition, teachers, steps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_raw
from nnopt.compress.distill.losses import attention_loss, attention_map, hint_loss, kd_loss
from nnopt.compress.distill.task import DistillationTask, DistillConfig, attention_pairs
from nnopt.core.errors import NnoptError, RecipeError
from nnopt.models import build_model
from nnopt.models.cnn import CnnConfig
from nnopt.recipe import resolve
from nnopt.runner import run_recipe


def test_kd_loss_matches_hinton_formula_by_hand():
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.2, 3.0, -1.0]])
    T = 2.0
    p_t = [math.exp(v / T) for v in t[0].tolist()]
    p_t = [v / sum(p_t) for v in p_t]
    p_s = [math.exp(v / T) for v in s[0].tolist()]
    p_s = [v / sum(p_s) for v in p_s]
    expected = T * T * sum(a * math.log(a / b) for a, b in zip(p_t, p_s))
    assert kd_loss(s, t, T).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_loss_gradient_is_scaled_difference_of_softened_probabilities():
    # d/ds of T^2 KL(p_t || p_s) = T (p_s - p_t) per example (Hinton et al. 2015, eq. 2)
    s = torch.randn(4, 5, requires_grad=True)
    t = torch.randn(4, 5)
    T = 3.0
    kd_loss(s, t, T).backward()
    expected = T * (F.softmax(s / T, 1) - F.softmax(t / T, 1)) / 4
    torch.testing.assert_close(s.grad, expected.detach(), rtol=1e-5, atol=1e-6)


def test_attention_map_and_loss_match_the_definition():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2) - 5
    q = (a ** 2).mean(1).flatten(1)
    q = q / q.norm(dim=1, keepdim=True)
    torch.testing.assert_close(attention_map(a), q)
    assert attention_map(a).norm(dim=1).allclose(torch.ones(2))
    b = torch.randn(2, 7, 2, 2)  # channel counts may differ, spatial sizes may not
    assert attention_loss(a, b).item() == pytest.approx(
        (attention_map(a) - attention_map(b)).pow(2).mean().item())
    with pytest.raises(ValueError, match="differ in size"):
        attention_loss(a, torch.randn(2, 3, 4, 4))
    assert hint_loss(a, a).item() == 0.0


def _models():
    shape, n = (1, 8, 8), 3
    student = build_model(CnnConfig(width=2, hidden=8), shape, n)
    teacher = build_model(CnnConfig(width=6, hidden=16), shape, n)
    return student, teacher, torch.rand(6, *shape), torch.tensor([0, 1, 2, 0, 1, 2])


def test_task_combines_hard_and_soft_terms():
    student, teacher, x, y = _models()
    cfg = DistillConfig(temperature=3.0, alpha=0.7)
    task = DistillationTask(teacher, cfg, x)
    assert task.setup(student) == [task.adapters] and len(task.adapters) == 0
    student.eval()  # no dropout: the two forwards below must agree
    out = task(student, x, y)
    s, t = student(x), teacher.eval()(x)
    expected = 0.3 * F.cross_entropy(s, y) + 0.7 * kd_loss(s, t, 3.0)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_hints_get_an_adapter_and_attention_pairs_share_spatial_sizes():
    student, teacher, x, y = _models()
    task = DistillationTask(teacher, DistillConfig(alpha=0.5, hint_weight=1.0,
                                                   attention_weight=1000), x)
    extra = task.setup(student)
    (adapter,) = extra[0]
    assert (adapter.in_features, adapter.out_features) == (8, 16)  # the hidden fc widths
    pairs = attention_pairs(student, teacher, x[:1])
    assert pairs and all(a == b for a, b in pairs)  # same architecture family: same names
    loss = task(student, x, y)["loss"]
    loss.backward()
    assert adapter.weight.grad is not None and student.net[0][0].weight.grad is not None
    task.teardown()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in student.modules())


def test_config_needs_some_loss_and_bad_layers_are_named():
    with pytest.raises(ValueError, match="nothing is distilled"):
        DistillConfig(alpha=0.0)
    student, teacher, x, _ = _models()
    task = DistillationTask(teacher, DistillConfig(hint_weight=1, hint_layers=[("nope", "net.1")]), x)
    with pytest.raises(NnoptError, match="'nope' is not a module"):
        task.setup(student)


def test_distill_recipe_with_student_and_prune_qat_losses(tmp_path):
    raw = tiny_raw(stages=[
        {"train": {"epochs": 1, "batch_size": 32}},
        {"distill": {"student": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1,
                     "batch_size": 32}, "hint_weight": 0.5}},
        {"from": "train", "prune": {"amount": 0.5, "preflight": False, "finetune": {
            "epochs": 1, "batch_size": 32}, "distill": {"teacher": "train"}}},
        {"from": "train", "qat": {"w_bits": 4, "finetune": {"epochs": 1, "batch_size": 32},
                                  "distill": {"teacher": "baseline", "alpha": 1.0}}}])
    report = run_recipe(resolve(raw), tmp_path / "run")
    d = report.stages[1].details["distillation"]
    assert d["student_params"] < d["teacher_params"]
    assert d["hint_pairs"] == [["net.3:input", "net.4:input"]]  # inputs of the last Linear
    assert [s.name for s in report.stages] == ["train", "distill", "prune", "qat"]


def test_unknown_teacher_and_student_are_clear_errors(tmp_path):
    with pytest.raises(RecipeError, match="unknown student model 'nope'"):
        resolve(tiny_raw(stages=[{"distill": {"student": {"name": "nope"}}}]))
    raw = tiny_raw(stages=[{"distill": {"teacher": "ghost", "train": {"epochs": 1}}}])
    with pytest.raises(NnoptError, match="teacher 'ghost' is not 'baseline', an earlier stage"):
        run_recipe(resolve(raw), tmp_path / "run")
    raw = tiny_raw(stages=[{"distill": {"train": {"epochs": 1}}}])
    with pytest.raises(NnoptError, match="no stage ran before"):
        run_recipe(resolve(raw), tmp_path / "run2")


def test_cached_teacher_logits_give_the_same_loss():
    student, teacher, x, y = _models()
    cfg = DistillConfig(temperature=2.0, alpha=0.8)
    cached = DistillationTask(teacher, cfg, x, train_x=x)
    plain = DistillationTask(teacher, cfg, x)
    cached.setup(student), plain.setup(student)
    student.eval()
    idx = torch.tensor([4, 1, 3])
    a = cached(student, x[idx], y[idx], index=idx)["loss"]
    b = plain(student, x[idx], y[idx], index=idx)["loss"]
    assert cached.cached is not None and a.item() == pytest.approx(b.item(), rel=1e-6)
    cached.teardown()
    assert cached.cached is None


def test_mixup_feeds_the_teacher_mixed_inputs_only_in_training():
    student, teacher, x, y = _models()
    task = DistillationTask(teacher, DistillConfig(alpha=1.0, mixup=1.0), x, train_x=x)
    task.setup(student)
    assert task.cached is None  # mixed inputs are new: nothing to cache
    seen = []
    handle = teacher.register_forward_hook(lambda m, a, out: seen.append(a[0]))
    student.train()
    torch.manual_seed(1)
    task(student, x, y)
    assert not torch.equal(seen[-1], x) and seen[-1].min() >= 0 and seen[-1].max() <= 1
    student.eval()
    task(student, x, y)
    assert torch.equal(seen[-1], x)
    handle.remove()


def test_teacher_from_a_saved_folder_or_a_factory(tmp_path):
    from nnopt.models import save_model
    from nnopt.runner import prepare

    resolved = resolve(tiny_raw())
    _, teacher = prepare(resolved)
    save_model(teacher, tmp_path / "teacher")
    for ref in (str(tmp_path / "teacher"), "helpers.user_models:small_net"):
        raw = tiny_raw(stages=[{"distill": {"teacher": ref, "train": {"epochs": 1,
                                                                       "batch_size": 32}}}])
        report = run_recipe(resolve(raw), tmp_path / ref.replace("/", "_").replace(":", "_"))
        assert report.stages[0].details["distillation"]["teacher"] == ref
