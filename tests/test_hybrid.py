"""Hybrid models: the tensor forms of the scikit-learn heads against scikit-learn's own
probabilities, the classical_head step end to end (save, reload, ONNX), the conv/attention
model's token grid."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import load_digits

from conftest import tiny_raw
from nnopt.learn.classical_head import ClassicalHeadConfig, fit_head
from nnopt.measure.runtimes import export_onnx
from nnopt.models import build_model, load_model
from nnopt.models.convattn import ConvAttnConfig
from nnopt.recipe import resolve
from nnopt.runner import run_recipe


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:600].astype(np.float64), y[:600]


@pytest.mark.parametrize("head", ["logistic", "gbdt", "svm"])
def test_tensor_head_matches_scikit_learn(digits, head):
    x, y = digits
    cfg = ClassicalHeadConfig(head=head, trees=15, max_iter=2000)
    module, shape, clf = fit_head(cfg, x[:450], y[:450], seed=0)
    with torch.no_grad():
        got = module(torch.as_tensor(x[450:], dtype=torch.float32)).exp().numpy()
    np.testing.assert_allclose(got, clf.predict_proba(x[450:]), atol=2e-4)
    assert (got.argmax(1) == clf.predict(x[450:])).mean() > 0.99
    assert shape["classes"] == 10


@pytest.mark.parametrize("head", ["logistic", "gbdt", "svm"])
def test_classical_head_step_saves_reloads_and_exports(tmp_path, head):
    raw = tiny_raw(stages=[{"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
                           {"classical_head": {"head": head, "trees": 5}}])
    raw["data"] = {"name": "synthetic", "shape": [1, 8, 8], "train_size": 96,
                   "test_size": 32, "num_classes": 3}
    rep = run_recipe(resolve(raw), tmp_path / "run")
    d = rep.stages[1].details["classical_head"]
    assert d["head"] == head and d["features"] == 8 and d["max_probability_gap"] < 1e-3
    model = load_model(tmp_path / "run" / "models" / "classical_head")
    assert model.spec["transforms"][-1]["kind"] == "classical_head"
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        p = model(x).exp()
    assert torch.allclose(p.sum(1), torch.ones(5), atol=1e-5)
    path = export_onnx(model, tmp_path / "m.onnx", torch.rand(1, 1, 8, 8))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], model(x).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_classical_head_needs_a_linear_classifier(tmp_path):
    raw = tiny_raw(model={"name": "wann", "connections": [["i0", "o0"]]},
                   stages=[{"classical_head": {}}])
    with pytest.raises(Exception, match="last linear layer"):
        run_recipe(resolve(raw), tmp_path / "run")


def test_convattn_attends_over_the_stem_feature_map():
    model = build_model(ConvAttnConfig(width=8, stages=2, depth=1, heads=2), (1, 28, 28), 10)
    assert model.net.pos.shape == (1, 49, 16)  # 7 x 7 positions of 16 channels
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="must divide"):
        build_model(ConvAttnConfig(width=6, stages=1, heads=4), (1, 28, 28), 10)
