"""Weight sharing and the Deep Compression file: k-means, Huffman, exact round trips."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans

from conftest import tiny_raw
from nnopt.compress.cluster import huffman
from nnopt.compress.cluster.codec import decode_model, encode_model
from nnopt.compress.cluster.kmeans import kmeans_1d
from nnopt.core.compute import predict
from nnopt.core.errors import ModelFileError
from nnopt.measure.quality import accuracy_score
from nnopt.models import load_model
from nnopt.recipe import resolve
from nnopt.runner import run_recipe


def test_kmeans_matches_sklearn_from_the_same_start():
    rng = np.random.default_rng(0)
    v = torch.tensor(np.concatenate([rng.normal(-1, 0.1, 300), rng.normal(0.5, 0.2, 500),
                                     rng.normal(2, 0.05, 200)]), dtype=torch.float32)
    book, labels = kmeans_1d(v, 3, init="linear", iters=100)
    init = np.linspace(v.min().item(), v.max().item(), 3).reshape(-1, 1)
    ref = KMeans(3, init=init, n_init=1, max_iter=100, tol=0).fit(v.numpy().reshape(-1, 1).astype(np.float64))
    np.testing.assert_allclose(book.numpy(), np.sort(ref.cluster_centers_.ravel()), rtol=1e-5)
    assert torch.equal(book[labels], book[(v[:, None] - book).abs().argmin(1)])


def _optimal_cost(counts):
    heap = [c for c in counts if c]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=600))
def test_huffman_round_trip_is_exact_and_optimal(symbols):
    s = np.array(symbols)
    counts = np.bincount(s, minlength=41)
    lengths = huffman.code_lengths(counts)
    blob = huffman.encode(s, lengths)
    assert np.array_equal(huffman.decode(blob, lengths, len(s)), s)
    if (counts > 0).sum() > 1:  # total bits equal the optimal prefix code's (no cap reached)
        assert int((counts * lengths).sum()) == _optimal_cost(counts.tolist())
    codes = huffman.canonical_codes(lengths)  # prefix-free
    words = [format(int(codes[i]), f"0{lengths[i]}b") for i in np.flatnonzero(lengths)]
    assert not any(a != b and b.startswith(a) for a in words for b in words)


def test_huffman_caps_code_lengths():
    counts = np.array([2 ** i for i in range(30)])
    lengths = huffman.code_lengths(counts)
    assert lengths.max() <= huffman.MAX_LEN
    s = np.repeat(np.arange(30), 3)
    assert np.array_equal(huffman.decode(huffman.encode(s, lengths), lengths, len(s)), s)


@pytest.fixture(scope="module")
def deep_compression(tmp_path_factory):
    out = tmp_path_factory.mktemp("dc") / "run"
    raw = tiny_raw(model={"name": "mlp", "hidden": [64, 32]}, stages=[
        {"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
        {"prune": {"amount": 0.8, "preflight": False}},
        {"cluster": {"bits": 3, "finetune": {"epochs": 1, "batch_size": 32}}}])
    return run_recipe(resolve(raw), out), out


def test_cluster_keeps_zeros_and_at_most_2_to_the_bits_values(deep_compression):
    report, out = deep_compression
    model = load_model(out / "models" / "cluster")
    pruned = load_model(out / "models" / "prune")
    for name in ("net.1", "net.3", "net.5"):
        w, p = model.get_submodule(name).weight, pruned.get_submodule(name).weight
        assert torch.equal(w == 0, p == 0)
        assert torch.unique(w[w != 0]).numel() <= 8
    assert report.stages[2].details["weight_sharing"]["net.1"]["bits"] == 3


def test_encoded_file_decodes_to_the_evaluated_model(deep_compression):
    report, out = deep_compression
    folder = out / "models" / "cluster"
    path = folder / "model.nnc"
    assert report.stages[2].metrics["compressed_size_bytes"] == path.stat().st_size
    assert path.stat().st_size * 5 < (folder / "model.safetensors").stat().st_size
    decoded, saved = load_model(path), load_model(folder)
    assert all(torch.equal(decoded.state_dict()[k], v) for k, v in saved.state_dict().items())
    from nnopt.data import load_data
    from nnopt.recipe import resolve as _resolve

    data = load_data(_resolve(tiny_raw()).data)
    assert accuracy_score(predict(decoded, data.test.x), data.test.y) == \
        report.stages[2].metrics["accuracy"]


def test_dense_clustered_layers_and_corrupt_files(tmp_path):
    from nnopt.models import build_model
    from nnopt.models.mlp import MlpConfig

    model = build_model(MlpConfig(hidden=[16]), (1, 4, 4), 3)
    with torch.no_grad():
        for layer in (model.net[1], model.net[3]):
            layer.weight.copy_(torch.tensor([-0.5, 0.25, 1.0])[torch.randint(0, 3, layer.weight.shape)])
    model.spec = {**model.spec, "weight_sharing": {"layers": {"net.1": {"bits": 2},
                                                              "net.3": {"bits": 2}}}}
    blob = encode_model(model)
    back = decode_model(blob)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ModelFileError, match="not an nnopt Deep Compression file"):
        decode_model(b"garbage")
    with pytest.raises(ModelFileError, match="corrupt"):
        decode_model(blob[:40])
