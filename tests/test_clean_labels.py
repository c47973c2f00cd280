"""clean_labels: out-of-sample probabilities, detection scores against known errors, and the
step in a recipe with injected noise."""

from __future__ import annotations

import numpy as np
import torch

from conftest import tiny_raw
from nnopt.learn.noisy.clean_labels import detection_scores
from nnopt.recipe import resolve
from nnopt.runner import run_recipe


def test_detection_scores_count_hits():
    noisy = torch.tensor([0, 1, 2, 0, 1])
    clean = torch.tensor([0, 0, 2, 1, 1])  # examples 1 and 3 are corrupted
    flagged = np.array([False, True, True, False, False])
    got = detection_scores(flagged, noisy, clean)
    assert got == {"precision": 0.5, "recall": 0.5, "flagged": 2, "corrupted": 2}


def test_step_flags_injected_errors_on_separable_data(tmp_path):
    raw = tiny_raw(model={"name": "mlp", "hidden": [32]},
                   data={"name": "digits", "label_noise": {"rate": 0.3, "seed": 1}})
    raw["evaluate"] = ["accuracy"]
    raw["stages"] = [{"clean_labels": {"folds": 3,
                                       "fold_train": {"epochs": 15, "lr": 0.01},
                                       "train": {"epochs": 15, "lr": 0.01}}}]
    result = run_recipe(resolve(raw), tmp_path)
    info = result.stages[0].details["clean_labels"]
    det = info["detection"]
    assert info["flagged"] + info["kept"] == info["examples"]
    # digits are easy: most flagged labels really were corrupted, and most corruptions found
    assert det["precision"] >= 0.8 and det["recall"] >= 0.6
    assert result.stages[0].metrics["accuracy"] >= 0.85


def test_relabel_keeps_every_input_and_reports_relabelling(tmp_path):
    raw = tiny_raw(model={"name": "mlp", "hidden": [32]},
                   data={"name": "digits", "label_noise": {"rate": 0.3, "seed": 1}})
    raw["evaluate"] = ["accuracy"]
    raw["stages"] = [{"clean_labels": {"folds": 3, "action": "relabel",
                                       "fold_train": {"epochs": 15, "lr": 0.01},
                                       "train": {"epochs": 3, "lr": 0.01}}}]
    result = run_recipe(resolve(raw), tmp_path)
    info = result.stages[0].details["clean_labels"]
    assert info["kept"] == info["examples"] and info["action"] == "relabel"
    # the out-of-sample prediction of a flagged digit is mostly its true class
    assert info["relabelled_correct"] >= 0.8
    notes = result.stages[0].details["training"]
    assert notes["objective"] == "cross-entropy"
    assert "confident learning" in (tmp_path / "report.md").read_text()
