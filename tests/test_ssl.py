"""Self-supervised learning: NT-Xent against its formula, augmentations (shapes, ranges,
seeded), k-NN against a direct implementation, the linear probe, the collapse check, the
labelled subset, and pretrain -> finetune in a recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.learn.selfsup.augment import AugmentConfig, augment
from nnopt.learn.selfsup.embedding import (
    ProbeConfig,
    classifier,
    embed,
    embed_batch,
    embedding_std,
    knn_predict,
    linear_probe,
)
from nnopt.learn.selfsup.finetune import FinetuneConfig, labelled_subset
from nnopt.learn.selfsup.masked import patch_mask
from nnopt.learn.selfsup.simclr import SimclrTask, multi_view_nt_xent, nt_xent
from nnopt.learn.selfsup.simsiam import simsiam_loss
from nnopt.recipe import resolve
from nnopt.runner import prepare, run_recipe


def test_nt_xent_matches_the_paper_formula_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    t = 0.5
    z = [v / v.norm() for v in [*z1, *z2]]  # views 0, 1 and their partners 2, 3
    partner = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(4) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[partner[i]]) / t) / den)
    assert nt_xent(z1, z2, t).item() == pytest.approx(total / 4, rel=1e-6)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped_ones():
    z = torch.eye(8)
    assert nt_xent(z, z, 0.1) < nt_xent(z, z.roll(1, 0), 0.1)


def test_multi_crop_pairs_every_view_with_the_main_views_only():
    z = [torch.randn(5, 3, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    assert multi_view_nt_xent(z[:2], 2, 0.3) == nt_xent(z[0], z[1], 0.3)
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]  # no (2, 3): both are local views
    expected = sum(nt_xent(z[i], z[j], 0.3) for i, j in pairs) / len(pairs)
    assert multi_view_nt_xent(z, 2, 0.3).item() == pytest.approx(expected.item(), rel=1e-6)


def test_simclr_task_makes_main_then_local_views_from_its_seed():
    main_cfg, local_cfg = AugmentConfig(crop=(0.8, 1.0)), AugmentConfig(crop=(0.1, 0.2))
    seen = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    task = SimclrTask(main_cfg, 0.5, 4, seed=7, local_views=2, local_augment=local_cfg)
    task.setup(model)
    x = torch.rand(5, 1, 4, 4)
    loss = task(model, x, torch.zeros(5, dtype=torch.long))["loss"]
    g = torch.Generator().manual_seed(7)
    views = [augment(x, c, g) for c in (main_cfg, main_cfg, local_cfg, local_cfg)]
    assert torch.equal(seen[0], torch.cat(views))
    with torch.no_grad():  # the same views through the same (training-mode) head
        z = task.head(embed_batch(model, torch.cat(views))).split(5)
    assert loss.item() == pytest.approx(multi_view_nt_xent(list(z), 2, 0.5).item(), rel=1e-6)
    assert loss.item() != pytest.approx(nt_xent(z[0], z[1], 0.5).item(), rel=1e-3)


def test_simsiam_loss_is_minus_one_for_aligned_predictions():
    z = torch.randn(5, 4)
    assert simsiam_loss(z, z, z, z).item() == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (6, 3, 16, 12), (6, 1, 40)])
def test_augment_keeps_shape_and_range_and_repeats_by_seed(shape):
    x = torch.rand(shape) * 0.8 + 0.1
    cfg = AugmentConfig(rotate=15, noise=0.1, erase=1.0)
    a = augment(x, cfg, torch.Generator().manual_seed(3))
    b = augment(x, cfg, torch.Generator().manual_seed(3))
    c = augment(x, cfg, torch.Generator().manual_seed(4))
    assert a.shape == x.shape
    assert a.min() >= x.min() and a.max() <= x.max()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_with_everything_off_is_the_identity():
    x = torch.rand(4, 1, 10, 10)
    off = AugmentConfig(crop=None, flip=0, rotate=0, translate=0, jitter=0, noise=0, erase=0)
    torch.testing.assert_close(augment(x, off, torch.Generator()), x, atol=1e-5, rtol=0)
    flip = AugmentConfig(crop=None, flip=1, rotate=0, translate=0, jitter=0)
    torch.testing.assert_close(augment(x, flip, torch.Generator()), x.flip(-1), atol=1e-5,
                               rtol=0)
    sig = torch.rand(3, 1, 40)
    torch.testing.assert_close(augment(sig, flip, torch.Generator()), sig.flip(-1), atol=1e-5,
                               rtol=0)


def test_augment_rejects_flat_inputs():
    with pytest.raises(ValueError, match="expects"):
        augment(torch.rand(4, 10), AugmentConfig(), torch.Generator())


def test_patch_mask_blanks_whole_patches():
    m = patch_mask(torch.Size([3, 2, 8, 8]), 4, 0.5, torch.Generator().manual_seed(0))
    assert m.shape == (3, 2, 8, 8)
    blocks = m.unfold(2, 4, 4).unfold(3, 4, 4)  # (3, 2, 2, 2, 4, 4): each block constant
    assert torch.equal(blocks.amax((-1, -2)), blocks.amin((-1, -2)))


def test_knn_matches_a_direct_weighted_vote():
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(50, 6, generator=g), torch.randint(0, 3, (50,), generator=g)
    query = torch.randn(7, 6, generator=g)
    got = knn_predict(bank, labels, query, 3, k=5, temperature=0.1, chunk=3)
    for i, q in enumerate(query):
        sims = [float(q @ b / (q.norm() * b.norm())) for b in bank]
        top = np.argsort(sims)[::-1][:5]
        votes = np.zeros(3)
        for j in top:
            votes[labels[j]] += math.exp(sims[j] / 0.1)
        assert got[i].item() == votes.argmax()


def test_embedding_std_is_zero_when_collapsed_and_near_one_when_spread():
    assert embedding_std(torch.ones(100, 16)) == pytest.approx(0.0, abs=1e-9)
    spread = embedding_std(torch.randn(20000, 16, generator=torch.Generator().manual_seed(0)))
    assert spread == pytest.approx(1.0, abs=0.05)


def test_linear_probe_separates_separable_embeddings():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    z = torch.randn(60, 5, generator=g) * 0.3 + 3 * nn.functional.one_hot(y, 5).float() + 10
    w, b = linear_probe(z, y, 3, ProbeConfig(epochs=200, lr=0.05))
    assert ((z @ w.T + b).argmax(1) == y).all()


def test_linear_probe_ignores_dimensions_constant_on_the_labelled_set():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    z = torch.stack([y.float() + 0.1 * torch.randn(40, generator=g), torch.zeros(40)], 1)
    w, b = linear_probe(z, y, 2, ProbeConfig(epochs=100, lr=0.05))
    assert torch.equal(w[:, 1], torch.zeros(2))
    new = torch.tensor([[0.0, 1e6], [1.0, -1e6]])  # the dead unit fires on new inputs
    assert (new @ w.T + b).argmax(1).tolist() == [0, 1]


def test_embedding_is_the_classifier_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(5, 1, 4)
    assert classifier(net) is net[3]
    torch.testing.assert_close(embed(net, x), net[:3](x))


def test_labelled_subset_is_balanced_and_seeded():
    y = torch.arange(1000) % 10
    idx = labelled_subset(y, 60, 10, True, seed=1)
    assert torch.bincount(y[idx], minlength=10).tolist() == [6] * 10
    assert torch.equal(idx, labelled_subset(y, 60, 10, True, seed=1))
    assert not torch.equal(idx, labelled_subset(y, 60, 10, True, seed=2))
    assert len(labelled_subset(y, 33, 10, False, seed=0).unique()) == 33


def test_pretrain_then_finetune_in_a_recipe(tmp_path):
    raw = tiny_raw(model={"name": "cnn", "width": 4, "hidden": 16})
    raw["evaluate"] = ["accuracy", "knn", "embedding_std"]
    raw["stages"] = [
        {"pretrain": {"train": {"epochs": 2, "batch_size": 32}, "proj_dim": 8,
                      "monitor_labels": 40}},
        {"finetune": {"labels": 20, "mode": "probe"}},
        {"finetune": {"labels": 20, "train": {"epochs": 2, "batch_size": 8}},
         "from": "pretrain"},
        {"pretrain": {"method": "masked", "train": {"epochs": 1, "batch_size": 32},
                      "decoder_hidden": 8}, "from": "input"}]
    result = run_recipe(resolve(raw), tmp_path)
    pre, probe, full, masked = result.stages
    hist = pre.details["history"]
    assert len(hist) == 2 and all("knn_accuracy" in h and "train_accuracy" not in h
                                  for h in hist)
    assert 0 < pre.metrics["embedding_std"] and 0 <= pre.metrics["knn_accuracy"] <= 1
    # the probe changes only the classifier: the embedding (so k-NN) is the pre-trained one
    assert probe.metrics["knn_accuracy"] == pre.metrics["knn_accuracy"]
    assert probe.details["finetune"]["labels"] == 20
    assert full.details["finetune"]["mode"] == "full"
    assert masked.details["pretrain"]["method"] == "masked"
    assert "Self-supervised" in (tmp_path / "report.md").read_text()


def test_finetune_encoder_lr_slows_every_layer_but_the_classifier(tmp_path):
    from nnopt.context import RunContext
    from nnopt.learn.selfsup.finetune import finetune

    resolved = resolve(tiny_raw(model={"name": "cnn", "width": 4, "hidden": 16}, stages=[]))
    data, start = prepare(resolved)
    ctx = RunContext(recipe=resolved, data=data, out_dir=tmp_path, stage="finetune")
    train = {"epochs": 2, "batch_size": 8, "optimizer": "sgd", "lr": 0.05}

    def moved(scale: float, head: bool) -> float:
        cfg = FinetuneConfig(labels=20, train=train, encoder_lr=scale)
        m = finetune(start, cfg, ctx)
        assert ctx.details["finetune"]["train"]["encoder_lr"] == scale
        ids, w0 = {id(p) for p in classifier(m).parameters()}, dict(start.named_parameters())
        return max((p - w0[k]).abs().max().item() for k, p in m.named_parameters()
                   if (id(p) in ids) == head)
    assert moved(1.0, head=False) > 1e-3 and moved(1e-6, head=False) < 1e-5
    assert moved(1e-6, head=True) > 1e-3


def test_augmented_finetuning_trains_on_seeded_views():
    from nnopt.learn.selfsup.finetune import AugmentedTask

    seen = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    cfg = AugmentConfig(crop=(0.5, 1.0), flip=0.5, translate=0.1, jitter=0.2)
    for _ in range(2):  # the same seed gives the same views
        out = AugmentedTask(cfg, seed=3)(model, x, y)
        assert out["output"].shape == (4, 3) and out["loss"].ndim == 0
    assert not torch.equal(seen[0], x) and torch.equal(seen[0], seen[1])
    assert torch.equal(seen[0], augment(x, cfg, torch.Generator().manual_seed(3)))


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved by whole pixels (content towards +dy, +dx), zeros coming in."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_augment_shifts_by_whole_pixels_without_blur():
    x = torch.rand(32, 1, 8, 8)
    x[0, 0, 0, 0] = 0  # the batch's range holds the zeros that come in
    cfg = AugmentConfig(crop=None, flip=0, translate=0.25, jitter=0)
    out = augment(x, cfg, torch.Generator().manual_seed(0))
    shifts = set()
    for i in range(len(x)):  # each view is an exact whole-pixel shift of its image
        match = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if torch.allclose(out[i], _shifted(x[i], dy, dx), atol=1e-5)]
        assert match, f"view {i} is not a whole-pixel shift"
        shifts.add(match[0])
    assert len(shifts) > 5  # and the shifts vary


def test_fixmatch_loss_by_hand():
    from nnopt.learn.selfsup.fixmatch import fixmatch_loss

    logits_l, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    weak = torch.tensor([[5.0, 0.0], [0.2, 0.0], [0.0, 6.0]])  # confident, unsure, confident
    strong = torch.tensor([[1.0, 0.0], [3.0, 3.0], [1.0, 1.0]])
    weak.requires_grad_()
    strong.requires_grad_()
    loss, mask = fixmatch_loss(logits_l, y, weak, strong, threshold=0.95, weight=0.5)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    sup = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    # pseudo-labels 0 and 1 for the confident two; the unsure one counts as 0 in the mean of 3
    unl = (math.log(1 + math.exp(-1)) + math.log(2)) / 3
    assert loss.item() == pytest.approx(sup + 0.5 * unl, rel=1e-6)
    loss.backward()
    assert weak.grad is None and strong.grad is not None  # none through the pseudo-labels


def test_fixmatch_step_sees_the_labelled_batch_and_two_views_of_pool_images():
    from nnopt.learn.selfsup.fixmatch import FixmatchConfig, FixmatchTask

    batches = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    model.register_forward_pre_hook(lambda m, args: batches.append(args[0].clone()))
    pool = torch.rand(50, 1, 4, 4)
    task = FixmatchTask(FixmatchConfig(ratio=2, threshold=0.3), pool, seed=0)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    out = task(model, x, y)
    assert batches[0].shape == (4 + 2 * 8, 1, 4, 4)  # labelled + weak and strong of 8 drawn
    weak, strong = batches[0][4:12], batches[0][12:]
    assert not torch.equal(weak, strong)  # two different views of the same 8 draws
    assert out["output"].shape == (4, 3) and out["loss"].requires_grad
    assert len(task.rates) == 1 and 0 <= task.mask_rate() <= 1
    out["loss"].backward()  # the gradient flows (through the strong views and labelled batch)
    assert model[1].weight.grad.abs().sum() > 0


def test_finetune_with_fixmatch_in_a_recipe(tmp_path):
    raw = tiny_raw(model={"name": "cnn", "width": 4, "hidden": 16})
    raw["stages"] = [{"finetune": {"labels": 20, "train": {"epochs": 2, "batch_size": 8},
                                   "fixmatch": {"ratio": 2, "threshold": 0.5}}}]
    (stage,) = run_recipe(resolve(raw), tmp_path).stages
    fm = stage.details["finetune"]["fixmatch"]
    assert fm["ratio"] == 2 and fm["unlabelled"] > 20 and 0 <= fm["mask_rate_last_epoch"] <= 1
    assert "FixMatch on" in (tmp_path / "report.md").read_text()
    raw["stages"][0]["finetune"]["augment"] = {"flip": 0.5}
    with pytest.raises(Exception, match="fixmatch makes the labelled view"):
        resolve(raw)


def test_nt_xent_keeps_fp32_similarities_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = nt_xent(z1, z2, 0.1)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(nt_xent(z1, z2, 0.1).item(), rel=1e-6)


def test_protocol_names_bf16_training():
    from nnopt.learn.selfsup.report import protocol
    from nnopt.report.model import StageRecord

    pre = {"method": "simclr", "epochs": 3, "examples": 100}
    plain = StageRecord("pretrain", "pretrain", 1.0, None, {}, {"pretrain": pre})
    low = StageRecord("pretrain", "pretrain", 1.0, None, {},
                      {"pretrain": {**pre, "precision": "bf16"}})
    assert protocol(plain) == "simclr pre-training, 3 epochs on 100 unlabelled inputs"
    assert protocol(low) == "simclr pre-training (bf16 autocast), 3 epochs on 100 unlabelled inputs"
    multi = StageRecord("pretrain", "pretrain", 1.0, None, {}, {"pretrain": {**pre, "views": 4}})
    assert protocol(multi).endswith("inputs, multi-crop: 4 views per image")
    fine = {"mode": "full", "labels": 600, "label_seed": 1,
            "train": {"epochs": 150, "lr": 2e-3, "encoder_lr": 0.25, "precision": "fp32"}}
    tuned = StageRecord("finetune", "finetune", 1.0, None, {}, {"finetune": fine})
    assert protocol(tuned).startswith("full fine-tuning (150 epochs, lr 0.002, encoder lr x0.25)")


def test_local_views_are_a_simclr_option():
    from nnopt.learn.selfsup.pretrain import PretrainConfig

    assert PretrainConfig(local_views=2).local_views == 2
    with pytest.raises(ValueError, match="applies to method simclr, not to simsiam"):
        PretrainConfig(method="simsiam", local_views=2)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_projector_depth_and_width(depth):
    from nnopt.learn.selfsup.simclr import mlp_head

    head = mlp_head(6, 10, 4, depth=depth)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert len(linears) == depth
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head) == depth - 1
    assert linears[0].in_features == 6 and linears[-1].out_features == 4
    assert all(m.out_features == 10 for m in linears[:-1])
    assert head(torch.randn(5, 6)).shape == (5, 4)


def test_simclr_projector_follows_the_recipe():
    from nnopt.learn.selfsup.pretrain import PretrainConfig, make_task

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Linear(8, 3))
    cfg = PretrainConfig(proj_dim=4, proj_hidden=32, proj_layers=3)
    task = make_task(cfg, (1, 4, 4), seed=0)
    (head,) = task.setup(model)
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [32, 32, 4]
    (default,) = make_task(PretrainConfig(proj_dim=4), (1, 4, 4), seed=0).setup(model)
    assert [m.out_features for m in default if isinstance(m, nn.Linear)] == [8, 4]
