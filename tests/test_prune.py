from __future__ import annotations

import copy
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.cli import main
from nnopt.compress.prune import masks as M
from nnopt.compress.prune.preflight import MARGIN, preflight
from nnopt.compress.prune.schedule import GradualPruning, cubic_sparsity
from nnopt.compress.prune.sensitivity import amounts_from_sensitivity, layer_sensitivity
from nnopt.compress.prune.structured import channel_prune
from nnopt.core.errors import RecipeError
from nnopt.core.registry import MODELS
from nnopt.data import load_data
from nnopt.measure.efficiency import count_macs, count_params
from nnopt.measure.runtimes import export_onnx
from nnopt.measure.sparse_exec import SparseLinear, to_sparse
from nnopt.measure.target import Target
from nnopt.models import build_model, load_model, save_model
from nnopt.recipe import resolve
from nnopt.train import TrainConfig, fit


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def model_of(name: str, shape=(1, 16, 16), classes: int = 5, **cfg) -> nn.Module:
    torch.manual_seed(0)
    c = MODELS.get(name).config.model_validate({"name": name, **cfg})
    return build_model(c, shape, classes, [0.5] * shape[0], [0.25] * shape[0]).eval()


def test_layer_magnitude_masks_remove_the_smallest_exactly():
    w = M.prunable_weights(mlp())
    masks = M.magnitude_masks(w, 0.75, "layer")
    for name, mask in masks.items():
        assert (~mask).sum().item() == round(0.75 * mask.numel())
        kept, gone = w[name].abs()[mask], w[name].abs()[~mask]
        assert kept.min() >= gone.max()


def test_global_masks_use_one_threshold():
    w = M.prunable_weights(mlp())
    masks = M.magnitude_masks(w, 0.6, "global")
    kept = torch.cat([w[n].abs()[m] for n, m in masks.items()])
    gone = torch.cat([w[n].abs()[~m] for n, m in masks.items()])
    assert kept.min() >= gone.max()
    assert len(gone) == round(0.6 * (len(kept) + len(gone)))


def test_random_masks_are_seeded_and_exact():
    w = M.prunable_weights(mlp())
    a, b = M.random_masks(w, 0.5, seed=1), M.random_masks(w, 0.5, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], M.random_masks(w, 0.5, seed=2)[k]) for k in a)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (2, 8)])
def test_nm_masks_keep_the_n_largest_of_every_m(n, m):
    w = M.prunable_weights(mlp())
    masks = M.nm_masks(w, n, m)
    for name, mask in masks.items():
        groups = mask.reshape(mask.shape[0], -1, m)
        assert (groups.sum(-1) == n).all()
        mags = w[name].abs().reshape(mask.shape[0], -1, m)
        assert (mags[groups].reshape(*groups.shape[:2], n).min(-1).values
                >= mags.masked_fill(groups, -1).max(-1).values).all()


def test_nm_rejects_layers_that_do_not_divide():
    with pytest.raises(ValueError, match="not a multiple of M=3"):
        M.nm_masks({"w": nn.Parameter(torch.ones(2, 8))}, 1, 3)


def test_cubic_schedule_formula():
    assert cubic_sparsity(0, 0.9, 10, 110) == 0.0
    assert cubic_sparsity(200, 0.9, 10, 110) == 0.9
    assert cubic_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 * (1 - 0.5 ** 3))


def blobs(n=256, seed=0):
    from nnopt.data.base import Split

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + 2 * torch.nn.functional.one_hot(y, 8).float()
    return Split(x, y)


@pytest.mark.parametrize("method", ["magnitude", "movement", "random"])
def test_gradual_pruning_reaches_its_sparsity_and_masks_survive(method):
    model = mlp()
    names = list(M.prunable_weights(model))
    cb = GradualPruning(names, 0.8, method=method, every=2, end_frac=0.5)
    fit(model, blobs(), config=TrainConfig(epochs=4, batch_size=32, lr=0.01), val=blobs(64, 1),
        callbacks=[cb])
    assert M.global_sparsity(model, names) == pytest.approx(0.8, abs=0.01)
    assert [a for _, a in cb.trace] == sorted(a for _, a in cb.trace)
    before = {n: p.detach() == 0 for n, p in model.named_parameters() if n in names}
    fit(model, blobs(), config=TrainConfig(epochs=1, lr=0.05), callbacks=[M.KeepMasks(cb.masks)])
    after = {n: p.detach() == 0 for n, p in model.named_parameters() if n in names}
    assert all(torch.equal(before[n] & after[n], before[n]) for n in names)


def test_zero_channels_are_removed_exactly():
    model = model_of("cnn", width=8, batch_norm=False, hidden=0, dropout=0.0)
    conv1, conv2 = model.net[0][0], model.net[0][3]
    dead = [1, 4]
    with torch.no_grad():
        conv1.weight[dead] = 0
        conv1.bias[dead] = 0
        conv2.weight[:, dead] = 0
    x = torch.rand(4, 1, 16, 16)
    ref = model(x)
    n0 = count_params(model)
    channel_prune(model, x[:1], amount=0.0, importance="l1", scope="layer", data=None,
                  per_layer={"net.0.0": 2 / 8})
    assert conv1.out_channels == 6 and conv2.in_channels == 6
    assert n0 - count_params(model) == len(dead) * (1 * 9 + 1) + len(dead) * conv2.out_channels * 9
    assert torch.allclose(model(x), ref, atol=1e-5)


def test_bn_scale_importance_removes_silenced_channels_exactly():
    model = model_of("cnn", width=8, hidden=0, dropout=0.0)
    bn1 = model.net[0][1]
    with torch.no_grad():
        bn1.weight[[0, 5]] = 0
        bn1.bias[[0, 5]] = 0
    x = torch.rand(4, 1, 16, 16)
    ref = model(x)
    channel_prune(model, x[:1], amount=0.0, importance="bn_scale", scope="layer", data=None,
                  per_layer={"net.0.0": 2 / 8})
    assert bn1.num_features == 6
    assert torch.allclose(model(x), ref, atol=1e-5)


def test_macs_budget_is_met():
    model = model_of("resnet", depth=8, width=0.5)
    x = torch.rand(1, 1, 16, 16)
    before = count_macs(model, x)
    channel_prune(model, x, amount=0.5, importance="l2", scope="global", data=None,
                  budget=lambda m: count_macs(m, x) <= 0.5 * before)
    assert count_macs(model, x) <= 0.5 * before


def test_pruned_resnet_saves_reloads_and_exports(tmp_path):
    model = model_of("resnet", depth=8, width=0.5)
    x = torch.rand(3, 1, 16, 16)
    channel_prune(model, x[:1], amount=0.5, importance="l1", scope="layer", data=None)
    model.eval()
    save_model(model, tmp_path / "m")
    spec = json.loads((tmp_path / "m/spec.json").read_text())
    assert spec["structure"]["tensors"]  # the pruned shapes are recorded
    again = load_model(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    path = export_onnx(again, tmp_path / "m.onnx", x[:1])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], model(x).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_vit_head_pruning(tmp_path):
    model = model_of("vit", dim=16, depth=1, heads=4, patch_size=4)
    x = torch.rand(2, 1, 16, 16)
    channel_prune(model, x[:1], amount=0.5, importance="l2", scope="layer", data=None,
                  prune_heads=True)
    attn = model.net.blocks[0].attn
    assert attn.num_heads == 2 and attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
    save_model(model, tmp_path / "v")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "v")(x), model(x))


def test_sparse_linear_matches_dense():
    lin = nn.Linear(20, 7)
    with torch.no_grad():
        lin.weight[torch.rand(7, 20) < 0.8] = 0
    x = torch.randn(5, 20)
    assert torch.allclose(SparseLinear(lin)(x), lin(x), atol=1e-5)
    model = nn.Sequential(nn.Flatten(), lin)
    sparse = to_sparse(model)
    assert isinstance(sparse[1], SparseLinear) and isinstance(model[1], nn.Linear)
    assert torch.allclose(sparse(x), model(x), atol=1e-5)


def test_preflight_warns_exactly_where_sparse_is_not_faster():
    dense = model_of("mlp", shape=(1, 8, 8), hidden=[64])
    pruned = copy.deepcopy(dense)
    w = M.prunable_weights(pruned)
    M.apply_masks(pruned, M.magnitude_masks(w, 0.9))
    targets = [Target(name="a", runtime="torch", batch_size=16),
               Target(name="b", runtime="onnxruntime", batch_size=1)]
    results, warns = preflight(dense, pruned, lambda b: torch.rand(b, 1, 8, 8), targets)
    assert [r["target"] for r in results] == ["a", "b"]
    assert {r["layer"] for r in results[0]["layers"]} == {"net.1", "net.3"}
    for r in results:
        assert r["pays_off"] == (r["sparse_ms"] * MARGIN <= r["dense_ms"])
    assert len(warns) == sum(not r["pays_off"] for r in results)
    assert all(any(f"'{r['target']}'" in w for w in warns) for r in results if not r["pays_off"])


def test_sensitivity_scan_and_derived_amounts():
    data = load_data(resolve(tiny_raw(data={"name": "digits"})).data)
    model = model_of("mlp", shape=(1, 8, 8), classes=10, hidden=[32])
    fit(model, data.train, config=TrainConfig(epochs=3, lr=0.01))
    names = list(M.prunable_weights(model))
    scan = layer_sensitivity(model, names, data.val, levels=(0.5, 0.9, 0.99))
    assert set(scan["curves"]) == set(names)
    fake = {"base_accuracy": 0.9, "curves": {"a": [[0.5, 0.9], [0.9, 0.85], [0.99, 0.5]],
                                             "b": [[0.5, 0.7], [0.9, 0.6]]}}
    assert amounts_from_sensitivity(fake, 0.06) == {"a": 0.9, "b": 0.0}


def test_prune_config_rules():
    for stage, needle in [({"schedule": "gradual"}, "set finetune"),
                          ({"method": "movement"}, "needs schedule 'gradual'"),
                          ({"method": "nm", "n": 4, "m": 4}, "N < M"),
                          ({"keep_macs": 0.5}, "unknown field 'keep_macs' in stages\\[0\\].prune "
                                                "\\(a field of method 'channel'\\)"),
                          ({"method": "nm", "amount": 0.5}, "a field of method 'channel' / "
                                                            "'magnitude' / 'movement' / 'random'"),
                          ({"method": "chanel"}, "method must be one of"),
                          ({"method": ["channel"]}, "method must be one of"),
                          ({"method": "channel", "keep_latency": 0.5}, "needs budget_target")]:
        with pytest.raises(RecipeError, match=needle):
            resolve(tiny_raw(stages=[{"prune": stage}]))


def run(tmp_path, stages, **extra):
    import yaml

    raw = tiny_raw(stages=stages, **extra)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    return json.loads((tmp_path / "o/results.json").read_text()), tmp_path / "o"


def test_masks_survive_save_reload_and_a_later_training_stage(tmp_path):
    res, out = run(tmp_path, [{"train": {"epochs": 1}},
                              {"prune": {"amount": 0.7, "finetune": {"epochs": 1}}},
                              {"train": {"epochs": 1, "lr": 0.05}}],
                   model={"name": "mlp", "hidden": [32]})
    sp = [s["details"].get("sparsity") for s in res["stages"]]
    assert sp[1] is not None
    final = load_model(out / "models/train-2")
    pruned = load_model(out / "models/prune")
    for name, p in pruned.named_parameters():
        if name in sp[1]:
            assert torch.equal((p == 0) & (dict(final.named_parameters())[name] == 0), p == 0)
    assert res["stages"][1]["metrics"]["nonzero_params"] < res["stages"][0]["metrics"]["params"]
    assert "Sparsity per layer" in (out / "report.md").read_text()


def test_channel_prune_stage_in_a_recipe(tmp_path):
    res, out = run(tmp_path, [{"train": {"epochs": 1}},
                              {"prune": {"method": "channel", "amount": 0.5,
                                         "finetune": {"epochs": 1}}}])
    m0, m1 = (s["metrics"] for s in res["stages"])
    assert m1["params"] < m0["params"] and m1["macs"] < m0["macs"]
    assert m1["size_bytes"] < m0["size_bytes"]
    assert "Channels removed" in (out / "report.md").read_text()


def test_sparse_target_and_preflight_in_a_recipe(tmp_path):
    targets = [{"name": "dense", "runtime": "torch", "batch_size": 4, "repeats": 5,
                "min_seconds": 0.0, "warmup": 1},
               {"name": "csr", "runtime": "torch", "batch_size": 4, "repeats": 5,
                "min_seconds": 0.0, "warmup": 1, "sparse": True}]
    res, out = run(tmp_path, [{"prune": {"amount": 0.9}}], targets=targets,
                   model={"name": "mlp", "hidden": [32]})
    st = res["stages"][0]
    assert {"latency_ms/dense", "latency_ms/csr"} <= set(st["metrics"])
    assert st["details"]["latency"]["csr"]["runtime"] == "torch+csr"
    assert len(st["details"]["preflight"]) == 2
    assert len(st["details"].get("warnings", [])) == sum(
        not r["pays_off"] for r in st["details"]["preflight"])


def test_lottery_rounds_and_control(tmp_path):
    res, out = run(tmp_path, [{"lottery": {"rounds": 2, "rate": 0.5, "rewind_epoch": 1,
                                           "train": {"epochs": 2, "batch_size": 32}}}],
                   model={"name": "mlp", "hidden": [32]})
    rows = res["stages"][0]["details"]["lottery"]["rows"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["remaining"] == pytest.approx(0.5, abs=0.01)
    assert rows[2]["remaining"] == pytest.approx(0.25, abs=0.01)
    assert all("random_test_accuracy" in r for r in rows[1:])
    assert (out / "figures/lottery_lottery.png").is_file()


def test_latency_budget_names_an_unknown_target(tmp_path):
    import yaml

    raw = tiny_raw(stages=[{"prune": {"method": "channel", "keep_latency": 0.5,
                                      "budget_target": "phone"}}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    code = main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and not (tmp_path / "o").exists()


def test_concatenation_is_followed_and_reloads(tmp_path):
    r = resolve(tiny_raw(model={"factory": "helpers.user_models:two_branch"}))
    model = build_model(r.model, (1, 8, 8), 5).eval()
    x = torch.rand(3, 1, 8, 8)
    channel_prune(model, x[:1], amount=0.5, importance="l1", scope="layer", data=None)
    assert model.net.a.out_channels == 3 and model.net.b.out_channels == 2
    assert model.net.mix.in_channels == 5
    save_model(model, tmp_path / "c")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "c", trust=r.trusted())(x), model(x))


def test_taylor_importance_uses_gradients():
    data = load_data(resolve(tiny_raw()).data)
    model = model_of("cnn", shape=(1, 8, 8), classes=10, width=4, hidden=8)
    before = count_params(model)
    channel_prune(model, data.train.x[:1], amount=0.5, importance="taylor", scope="layer",
                  data=data.train)
    assert count_params(model) < before
    assert all(p.grad is None for p in model.parameters())
