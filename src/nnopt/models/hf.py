"""Hugging Face transformers for sequence classification, offline: ``model: {hf: FOLDER}`` (a
local folder with config.json, its safetensors weights and tokenizer) or ``model: {hf:
{model_type: bert, hidden_size: 128, ...}}`` (built from a config, randomly initialised).

The module takes one tensor of token ids (0 or the config's pad id = padding; float ids are
accepted and cast), as the ``hf-dataset`` and ``sentences`` datasets give, so it trains,
measures, exports and quantizes like every other nnopt model. Eager attention is used: it
exports to ONNX, and head pruning only has to slice the projections.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from nnopt.core.config import PATH
from nnopt.core.errors import DataError, RecipeError, first_line
from nnopt.core.extras import require
from nnopt.core.fileio import read_inside, regular_file
from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig, read_weights, weightless

MAX_CONFIG_BYTES = 1 << 20
# the sizes a config may set, and their ranges
SIZES = {"hidden_size": (1, 65_536), "num_hidden_layers": (1, 1_024),
         "num_attention_heads": (1, 4_096), "intermediate_size": (1, 1 << 20),
         "vocab_size": (1, 1 << 24), "max_position_embeddings": (1, 1 << 20),
         "type_vocab_size": (1, 1 << 16)}  # num_labels: always the data's class count
# config keys that name code or files: a config is data
REFUSED = ("auto_map", "trust_remote_code", "_name_or_path", "transformers_version")


class HfConfig(ModelConfig):
    name: Literal["hf"] = "hf"
    hf: str | dict[str, Any] = Field(..., json_schema_extra=PATH, description=(
        "a local folder (config.json, model.safetensors; a relative path is read from the "
        "recipe's folder), or a config to build from, e.g. {model_type: bert, hidden_size: 64, "
        "num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 128}"))
    pretrained: bool = Field(True, description="load the folder's weights (else random "
                             "initialisation of its architecture)")
    dropout: float | None = Field(None, ge=0, lt=1, description="hidden and attention dropout "
                                  "(default: the config's)")

    @field_validator("hf")
    @classmethod
    def _config(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, dict):
            if not isinstance(value.get("model_type"), str):
                raise ValueError("a config needs model_type (e.g. bert, roberta, electra)")
            bad = sorted(set(value) & set(REFUSED))
            if bad:
                raise ValueError(f"config may not set {', '.join(bad)}")
        return value


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not os.path.lexists(path):
        raise DataError(f"hf model folder {folder}: config.json is missing")
    data = read_inside(path, folder, MAX_CONFIG_BYTES, "model config", DataError)
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not JSON: {str(exc)[:80]}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise DataError(f"{path} has no model_type")
    return {k: v for k, v in config.items() if k not in REFUSED and k != "architectures"}


def check_sizes(config: dict[str, Any], where: str) -> None:
    """The sizes a transformer is built from, each a whole number in its range (a config is
    data: 0 heads would divide by zero inside transformers, 10^9 layers exhaust memory)."""
    for key, (low, high) in SIZES.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if type(value) is not int or not low <= value <= high:
            raise DataError(f"{where}: {key} must be a whole number in {low}..{high}, got "
                            f"{json.dumps(value)[:40]}")
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    if type(heads) is int and type(hidden) is int and hidden % heads:
        raise DataError(f"{where}: hidden_size {hidden} is not a multiple of "
                        f"num_attention_heads {heads}")


def architecture(cfg: HfConfig, num_classes: int) -> dict[str, Any]:
    """The config dict the model is built from (the folder's config.json, or the recipe's)."""
    config = dict(_read_config(Path(cfg.hf)) if isinstance(cfg.hf, str) else cfg.hf)
    check_sizes(config, str(Path(cfg.hf) / "config.json") if isinstance(cfg.hf, str)
                else "hf config")
    config.update(num_labels=num_classes, attn_implementation="eager")
    for key in ("id2label", "label2id", "torch_dtype", "dtype"):  # nnopt trains in fp32
        config.pop(key, None)
    if cfg.dropout is not None:
        config.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    return config


@cache
def transformers_lib() -> Any:
    """The transformers package (the 'hf' extra), without the log noise of the torchao it
    imports when building a model."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return require("transformers", "Hugging Face models")


def hf_config(config: dict[str, Any]) -> Any:
    """A transformers PretrainedConfig from a plain dict (no file, no hub)."""
    transformers = transformers_lib()
    rest = {k: v for k, v in config.items() if k != "model_type"}
    try:
        return transformers.AutoConfig.for_model(config["model_type"], **rest)
    except Exception as exc:  # noqa: BLE001  (transformers' own checks of a config, which is data)
        raise RecipeError(f"hf config: {first_line(exc)[:160]}") from None


class HfClassifier(nn.Module):
    """A transformers sequence classifier behind one input: token ids (B, L)."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        return self.model(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits


def _load_weights(model: nn.Module, folder: Path) -> None:
    """The folder's safetensors weights; a base model's checkpoint (no task head) fits under the
    classifier's base-model prefix; a head for other labels stays freshly initialised."""
    files = [regular_file(f, "weights file", DataError, folder)
             for f in sorted(folder.glob("*.safetensors"))]
    if not files:
        raise DataError(f"hf model folder {folder}: no .safetensors weights (nnopt never "
                        "unpickles pytorch_model.bin; set pretrained: false for random weights)")
    own, prefix = model.state_dict(), getattr(model, "base_model_prefix", "")
    matched: dict[str, torch.Tensor] = {}
    for file in files:
        for key, value in read_weights(file).items():
            name = key if key in own else f"{prefix}.{key}"
            if name in own and own[name].shape == value.shape:
                matched[name] = value
    if not matched:
        raise DataError(f"the weights in {folder} do not fit its config.json")
    model.load_state_dict(matched, strict=False)


@MODELS.register("hf", config=HfConfig, normalize=False, inputs="tokens",
                 spec=lambda cfg, num_classes: {"name": "hf", "hf": architecture(cfg, num_classes),
                                                "pretrained": False})
def hf(cfg: HfConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A Hugging Face transformers sequence classifier (BERT, RoBERTa, ELECTRA, ...) from a
    local folder or a config; inputs are token ids."""
    if len(input_shape) != 1:
        raise DataError(f"hf models take token ids (L,); the data gives input shape "
                        f"{tuple(input_shape)} (use a text dataset: hf-dataset with a text "
                        "column, or sentences)")
    transformers = transformers_lib()
    config = hf_config(architecture(cfg, num_classes))
    try:
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    except (ValueError, TypeError, ArithmeticError, KeyError, AttributeError) as exc:
        # a config that transformers accepts but cannot build (it is data, not nnopt's bug)
        raise RecipeError(f"hf model: cannot build from its config: {type(exc).__name__}: "
                          f"{first_line(exc)[:140]}") from None
    if isinstance(cfg.hf, str) and cfg.pretrained and not weightless():
        _load_weights(model, Path(cfg.hf))
    if input_shape[0] > getattr(config, "max_position_embeddings", input_shape[0]):
        raise DataError(f"sequences of {input_shape[0]} tokens exceed the model's "
                        f"max_position_embeddings ({config.max_position_embeddings})")
    return HfClassifier(model, int(getattr(config, "pad_token_id", 0) or 0))
