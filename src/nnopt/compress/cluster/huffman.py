"""Canonical Huffman coding of small alphabets (<= 2^16 symbols), written for the Deep
Compression codec: code lengths capped at 16 bits so that decoding is a table lookup."""

from __future__ import annotations

import heapq

import numpy as np

MAX_LEN = 16


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length per symbol (0 for symbols that never occur), at most MAX_LEN bits.

    Lengths over the cap are avoided by halving the counts (keeping each used symbol >= 1) and
    rebuilding, which costs a little optimality only on extremely skewed inputs.
    """
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) == 0:
        return lengths
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    work = counts[used].copy()
    while True:
        heap = [(int(c), i, (int(s),)) for i, (c, s) in enumerate(zip(work, used))]
        heapq.heapify(heap)
        depth = {int(s): 0 for s in used}
        tie = len(heap)
        while len(heap) > 1:
            c1, _, a = heapq.heappop(heap)
            c2, _, b = heapq.heappop(heap)
            for s in a + b:
                depth[s] += 1
            heapq.heappush(heap, (c1 + c2, tie, a + b))
            tie += 1
        if max(depth.values()) <= MAX_LEN:
            break
        work = (work >> 1) | 1
    for s, d in depth.items():
        lengths[s] = d
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values for the given lengths (codes assigned in (length, symbol) order)."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev
        codes[s] = code
        prev = int(lengths[s])
        code += 1
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Pack the codes of ``symbols`` MSB first into bytes (the last byte zero-padded)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if len(symbols) == 0:
        return b""
    codes = canonical_codes(lengths)
    ln = lengths[symbols]
    if (ln == 0).any():
        raise ValueError("a symbol to encode has no code (its count was zero)")
    total = int(ln.sum())
    starts = np.cumsum(ln) - ln
    within = np.arange(total) - np.repeat(starts, ln)
    shift = np.repeat(ln, ln) - 1 - within
    bits = (np.repeat(codes[symbols], ln) >> shift) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols from ``data`` encoded with ``encode`` and these lengths."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or not len(lengths) or lengths.min() < 0 or lengths.max() > MAX_LEN:
        raise ValueError(f"code lengths must be 0..{MAX_LEN}")
    if not 0 < count <= 8 * len(data):  # every code has at least one bit
        raise ValueError(f"{count} symbols cannot fit in {len(data)} bytes")
    width = int(lengths.max())
    codes = canonical_codes(lengths)
    sym_tab = np.zeros(1 << width, dtype=np.int64)
    len_tab = np.zeros(1 << width, dtype=np.int64)
    for s in np.flatnonzero(lengths):
        lo = int(codes[s]) << (width - int(lengths[s]))
        hi = lo + (1 << (width - int(lengths[s])))
        sym_tab[lo:hi] = s
        len_tab[lo:hi] = lengths[s]
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.int64)
    bits = np.concatenate([bits, np.zeros(width, dtype=np.int64)])
    n = len(bits) - width
    window = np.zeros(n, dtype=np.int64)
    for j in range(width):
        window = (window << 1) | bits[j:j + n]
    win, syms, lens = window.tolist(), sym_tab.tolist(), len_tab.tolist()
    out = [0] * count
    p = 0
    for i in range(count):
        w = win[p]
        out[i] = syms[w]
        p += lens[w]
    return np.asarray(out, dtype=np.int64)
