"""The Deep Compression file (Han et al. 2016): weight-shared layers stored as a codebook plus
Huffman-coded cluster indices and, for sparse layers, Huffman-coded gaps between non-zeros;
every other tensor stored raw. ``decode`` rebuilds the exact model (bit for bit).

Layout: MAGIC, u32 little-endian header length, zlib-compressed JSON header (spec, and per
tensor its encoding, shape, dtype, code lengths and payload offsets), then the payloads.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnopt.compress.cluster import huffman
from nnopt.core.environment import memory_bytes
from nnopt.core.errors import ModelFileError, NnoptError, first_line
from nnopt.core.fileio import atomic_write_bytes, inflate, read_inside
from nnopt.core.registry import FORMATS
from nnopt.models.saving import build_from_spec, vouched

MAGIC = b"NNOPTDC\x01"
MAX_GAP = 255  # gap symbols 0..254 are runs of zeros; symbol 255 skips 255 zeros (no weight)
SUFFIX = ".nnc"
MAX_HEADER = 64 * 2 ** 20  # bytes of the inflated JSON header


def _shared_streams(t: torch.Tensor) -> tuple[dict[str, Any], bytes]:
    """Encode one weight-shared tensor densely or sparsely, whichever file is smaller."""
    flat = t.detach().flatten().float()
    nz = flat != 0
    values = flat[nz]
    book = torch.unique(values) if len(values) else torch.zeros(0)
    idx = torch.searchsorted(book, values).numpy()
    book_bytes = book.numpy().astype("<f4").tobytes()
    # dense: every position gets a symbol, zero is symbol len(book)
    dense_sym = np.full(len(flat), len(book), dtype=np.int64)
    dense_sym[nz.numpy()] = idx
    d_len = huffman.code_lengths(np.bincount(dense_sym, minlength=len(book) + 1))
    dense = huffman.encode(dense_sym, d_len)
    # sparse: indices of the non-zeros, and the runs of zeros before each of them
    pos = np.flatnonzero(nz.numpy())
    gaps = np.diff(np.concatenate([[-1], pos])) - 1
    gap_sym = _gap_symbols(gaps)
    i_len = huffman.code_lengths(np.bincount(idx, minlength=len(book)))
    g_len = huffman.code_lengths(np.bincount(gap_sym, minlength=MAX_GAP + 1))
    i_bytes, g_bytes = huffman.encode(idx, i_len), huffman.encode(gap_sym, g_len)
    if len(i_bytes) + len(g_bytes) < len(dense):
        meta = {"encoding": "shared-sparse", "book": len(book), "count": len(idx),
                "gap_count": len(gap_sym), "index_lengths": _lengths(i_len),
                "gap_lengths": _lengths(g_len), "index_bytes": len(i_bytes)}
        return meta, book_bytes + i_bytes + g_bytes
    meta = {"encoding": "shared", "book": len(book), "count": len(dense_sym),
            "index_lengths": _lengths(d_len)}
    return meta, book_bytes + dense


def _gap_symbols(gaps: np.ndarray) -> np.ndarray:
    escapes = gaps // MAX_GAP
    rest = gaps % MAX_GAP
    out = np.repeat(np.full(len(gaps), MAX_GAP), escapes)
    ends = np.cumsum(escapes + 1) - 1
    full = np.empty(int((escapes + 1).sum()), dtype=np.int64)
    mask = np.ones(len(full), dtype=bool)
    mask[ends] = False
    full[mask] = out
    full[ends] = rest
    return full


def _lengths(lengths: np.ndarray) -> list[int]:
    return [int(x) for x in lengths]


def encode_model(model: nn.Module) -> bytes:
    """The Deep Compression file of an nnopt model whose spec lists ``weight_sharing`` layers."""
    spec = {k: v for k, v in model.spec.items() if k != "weights_sha256"}
    shared = set((spec.get("weight_sharing") or {}).get("layers", {}))
    entries, payload = [], bytearray()
    for name, t in model.state_dict().items():
        entry: dict[str, Any] = {"name": name, "shape": list(t.shape),
                                 "dtype": str(t.dtype).removeprefix("torch."),
                                 "offset": len(payload)}
        if name.removesuffix(".weight") in shared and name.endswith(".weight"):
            meta, blob = _shared_streams(t)
        else:
            meta, blob = {"encoding": "raw"}, t.detach().contiguous().cpu().numpy().tobytes()
        entry.update(meta, length=len(blob))
        entries.append(entry)
        payload += blob
    header = zlib.compress(json.dumps({"spec": spec, "tensors": entries},
                                      separators=(",", ":")).encode(), 9)
    return MAGIC + struct.pack("<I", len(header)) + header + bytes(payload)


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
          "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


def _decode_tensor(e: dict[str, Any], blob: bytes) -> torch.Tensor:
    if e["dtype"] not in DTYPES or e["encoding"] not in ("raw", "shared", "shared-sparse"):
        raise ValueError(f"tensor {e['name']}: unknown dtype or encoding")
    dtype = DTYPES[e["dtype"]]
    if not all(type(d) is int and d >= 0 for d in e["shape"]):
        raise ValueError(f"tensor {e['name']}: bad shape")
    n = int(np.prod(e["shape"])) if e["shape"] else 1
    # zeros of a sparse layer cost at most 1 bit per 255 of them
    if n > 8 * MAX_GAP * (len(blob) + 1):
        raise ValueError(f"tensor {e['name']}: {n} elements cannot come from {len(blob)} bytes")
    if e["encoding"] == "raw":
        arr = np.frombuffer(blob, dtype=torch.empty(0, dtype=dtype).numpy().dtype).copy()
        return torch.from_numpy(arr).reshape(e["shape"])
    book = np.frombuffer(blob[:4 * e["book"]], dtype="<f4")
    rest = blob[4 * e["book"]:]
    flat = np.zeros(n, dtype=np.float32)
    if e["encoding"] == "shared":
        sym = huffman.decode(rest, np.array(e["index_lengths"]), e["count"])
        values = np.concatenate([book, np.zeros(1, dtype=np.float32)])
        flat = values[sym]
    else:
        idx = huffman.decode(rest[:e["index_bytes"]], np.array(e["index_lengths"]), e["count"])
        gap_sym = huffman.decode(rest[e["index_bytes"]:], np.array(e["gap_lengths"]),
                                 e["gap_count"])
        steps = np.where(gap_sym == MAX_GAP, MAX_GAP, gap_sym + 1)
        placed = gap_sym != MAX_GAP
        pos = (np.cumsum(steps) - 1)[placed]
        flat[pos] = book[idx]
    return torch.from_numpy(flat.astype(np.float32)).reshape(e["shape"]).to(dtype)


def decode_model(data: bytes, source: str = "file", trust: tuple[str, ...] = ()) -> nn.Module:
    """Rebuild the model a Deep Compression file holds (eval mode); its header's spec is data,
    checked like a model folder's (``trust`` lists the factories vouched for)."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ModelFileError(f"{source} is not an nnopt Deep Compression file")
    (hlen,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(inflate(data[start:start + hlen], MAX_HEADER))
        body = data[start + hlen:]
        tensors = {e["name"]: _decode_tensor(e, body[e["offset"]:e["offset"] + e["length"]])
                   for e in header["tensors"]}
        model = build_from_spec(header["spec"], trust=trust, source=source,
                                expect={k: tuple(v.shape) for k, v in tensors.items()})
        model.load_state_dict(tensors, strict=True)
    except (zlib.error, json.JSONDecodeError, KeyError, ValueError, IndexError, TypeError,
            RuntimeError, MemoryError, struct.error) as exc:
        raise ModelFileError(f"{source} is corrupt: {first_line(exc)}") from None
    return model.eval()


def load_encoded(path: str | Path, spec: None = None, trust: tuple[str, ...] = ()) -> nn.Module:
    """A model from its entropy-coded ``.nnc`` file (the header holds the spec)."""
    path = Path(path)
    data = read_inside(path, path.parent, memory_bytes() // 4, "model file", ModelFileError)
    return decode_model(data, str(path), trust)


def write_encoded(model: nn.Module, folder: str | Path) -> Path | None:
    """Write ``folder/model.nnc`` if the model's shared layers still hold at most their
    codebook's values (a later training stage may have broken the sharing); the file is
    decoded again and must give back every tensor bit for bit."""
    layers = (model.spec.get("weight_sharing") or {}).get("layers", {})
    state = model.state_dict()
    for name, row in layers.items():
        w = state[name + ".weight"]
        if torch.unique(w[w != 0]).numel() > 2 ** row["bits"]:
            return None
    blob = encode_model(model)
    back = decode_model(blob, trust=vouched(model.spec)).state_dict()
    if any(not torch.equal(back[k], v.cpu()) for k, v in state.items()):
        raise NnoptError("the Deep Compression file did not decode to the same weights")
    path = Path(folder) / ("model" + SUFFIX)
    atomic_write_bytes(path, blob)
    return path


FORMATS.add("nnc", load_encoded, write=write_encoded)
