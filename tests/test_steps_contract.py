"""Every registered step keeps the contract of DESIGN.md section 3 (checked over the registry)."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import tiny_raw
from nnopt.context import RunContext
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.measure.base import is_artifact, is_stochastic, runtime_of
from nnopt.measure.runtimes import export_onnx
from nnopt.models import load_model, save_model
from nnopt.recipe import resolve
from nnopt.runner import prepare


@pytest.mark.parametrize("step", STEPS.names())
def test_step_contract(step, tmp_path):
    entry = STEPS.get(step)
    assert "tiny" in entry.meta, f"step '{step}' must register a tiny config for tests"
    resolved = resolve(tiny_raw(stages=[{step: entry.meta["tiny"]}]))
    data, model = prepare(resolved)
    before = copy.deepcopy(model.state_dict())
    # an earlier stage exists, as in a recipe, for steps that use one (e.g. distill's teacher)
    ctx = RunContext(recipe=resolved, data=data, out_dir=tmp_path, stage=step,
                     models={"earlier": copy.deepcopy(model)})
    out = entry.fn(model, resolved.stages[0].config, ctx)
    # the input model is not mutated
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = data.test.x[:4]
    with torch.no_grad():
        y = out.eval()(x)
    assert y.shape == (4, data.num_classes)
    save_model(out, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "m")(x), y)
    if is_artifact(out) and runtime_of(out) == "torch":
        return  # a PyTorch int8/half artifact claims no ONNX export
    if is_stochastic(out):  # sampling models are deployed with PyTorch, and say so
        with pytest.raises(NnoptError, match="deploy it with PyTorch"):
            export_onnx(out, tmp_path / "m.onnx", x[:1])
        return
    path = export_onnx(out, tmp_path / "m.onnx", x[:1])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], y.numpy(),
                               rtol=1e-4, atol=1e-5)
