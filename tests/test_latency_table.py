"""The per-operator latency table: a network's operators are found by a forward pass, each is
timed once and cached on disk, and the prediction is their sum plus the call overhead."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nnopt.core.errors import NnoptError
from nnopt.measure.latency_table import LatencyTable, operators
from nnopt.measure.target import Target

T = Target(name="cpu", runtime="torch", batch_size=2, threads=1)


def _net(width=4, classes=10):
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(width * 16, classes))


def test_operators_are_the_leaf_modules_with_their_input_shapes():
    ops = operators(_net(), torch.rand(1, 1, 8, 8))
    assert [type(m).__name__ for _, m, _ in ops] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten",
                                                      "Linear"]
    assert [s for _, _, s in ops][0] == (1, 1, 8, 8) and ops[4][2] == (1, 64)


def test_prediction_is_the_sum_of_cached_operator_times(tmp_path):
    table = LatencyTable(T, tmp_path)
    pred = table.predict_ms(_net(), (1, 8, 8))
    keys = [k for k, _, _ in operators(_net(), torch.rand(1, 1, 8, 8))]
    assert pred == pytest.approx(table.overhead_ms() + sum(table.table[k] for k in keys))
    saved = json.loads(table.path.read_text())["ops"]
    assert set(keys) <= set(saved)
    # a new table on the same machine and target reads the cache: nothing is timed again
    again = LatencyTable(T, tmp_path)
    again._time = lambda fn: pytest.fail("an operator was timed again")  # type: ignore
    assert again.predict_ms(_net(), (1, 8, 8)) == pytest.approx(pred)
    # a wider network adds only its new operators
    wider = LatencyTable(T, tmp_path)
    timed = []
    real = wider._time
    wider._time = lambda fn: timed.append(1) or real(fn)  # type: ignore
    wider.predict_ms(_net(classes=5), (1, 8, 8))
    assert len(timed) == 1
    # another batch size is another table
    assert LatencyTable(T.model_copy(update={"batch_size": 4}), tmp_path).path != table.path


def test_onnxruntime_targets_are_refused():
    with pytest.raises(NnoptError, match="other runtimes fuse them"):
        LatencyTable(Target(name="e", runtime="onnxruntime"))
