"""A generated English sentence set (deterministic by seed) for text workloads such as MiniLM:
four topics, each sentence built from a template and topic vocabulary. Nothing is downloaded."""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
from pydantic import Field

from nnopt.core.config import Seed
from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, make_splits
from nnopt.models.minilm import tokenize

TOPICS = {
    "food": (["The chef", "My aunt", "A hungry student", "The baker", "Our neighbour"],
             ["cooked", "tasted", "served", "prepared", "burned"],
             ["a spicy curry", "fresh bread", "a bowl of soup", "grilled fish", "a chocolate cake"]),
    "sport": (["The striker", "A young runner", "The team captain", "The goalkeeper", "Our coach"],
              ["won", "lost", "trained for", "played", "celebrated"],
              ["the final match", "a marathon", "the league title", "a tennis game", "the relay"]),
    "weather": (["The storm", "A cold wind", "Heavy rain", "The morning fog", "A heat wave"],
                ["hit", "covered", "flooded", "swept across", "settled over"],
                ["the coast", "the valley", "the city streets", "the northern hills", "the harbour"]),
    "tech": (["The engineer", "A new startup", "The laptop", "Our server", "The research lab"],
             ["released", "crashed during", "optimised", "debugged", "shipped"],
             ["a software update", "the database", "a neural network", "the mobile app",
              "a faster compiler"]),
}
ENDINGS = ["", " yesterday", " last week", " this morning", " again", " at night"]


def make_sentences(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` sentences and their topic index, drawn with a seeded generator."""
    rng = random.Random(seed)
    names = list(TOPICS)
    out, labels = [], []
    for _ in range(n):
        t = rng.randrange(len(names))
        subj, verb, obj = TOPICS[names[t]]
        out.append(f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)}"
                   f"{rng.choice(ENDINGS)}.")
        labels.append(t)
    return out, labels


# -- the registered dataset -------------------------------------------------------------------


class SentencesConfig(DataConfig):
    name: Literal["sentences"] = "sentences"
    size: int = Field(2000, ge=20, le=10_000_000,
                      description="sentences generated (80% train, 20% test)")
    seed: Seed = 0
    max_length: int = Field(32, ge=4, le=256, description="tokens per sentence (padded)")


@DATASETS.register("sentences", config=SentencesConfig)
def sentences(cfg: SentencesConfig) -> DataSplits:
    """Generated topic-labelled sentences (food, sport, weather, tech) as MiniLM token ids."""
    text, labels = make_sentences(cfg.size, cfg.seed)
    ids = tokenize(text, cfg.max_length).numpy().astype(np.float32)
    ids = np.pad(ids, ((0, 0), (0, cfg.max_length - ids.shape[1])))
    n_test = cfg.size // 5
    y = np.asarray(labels)
    return make_splits("sentences", cfg, ids[n_test:], y[n_test:], ids[:n_test], y[:n_test],
                       class_names=list(TOPICS), num_classes=len(TOPICS))
