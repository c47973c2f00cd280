"""Macro search spaces: architectures of one registered model family, each searched field taking
one value of a finite list (depth, widths, kernel sizes, block types, expansion, ...).

An architecture is a plain dict ``{field: value}`` of the searched fields; together with the
fixed fields it is the family's model config, so the model it names is built, saved and reloaded
like any other.
"""

from __future__ import annotations

import math
import random
from typing import Any

from pydantic import Field, model_validator

from nnopt.core.config import Strict
from nnopt.core.errors import RecipeError, unknown_choice
from nnopt.core.registry import MODELS

FAMILIES = ("cnn", "resnet", "cnn1d")


class MacroSpace(Strict):
    """A model family and, for each searched field of its config, the values to choose from."""

    family: str = Field("cnn", description="registered model family: cnn, resnet or cnn1d")
    choices: dict[str, list[Any]] = Field(
        default_factory=lambda: {"width": [8, 16, 32], "depth": [1, 2, 3],
                                 "kernel_size": [3, 5], "hidden": [0, 64, 128]},
        description="field of the family's config -> the values it may take")
    fixed: dict[str, Any] = Field(default_factory=dict, description="other fields of the "
                                  "family's config, the same for every architecture")

    @model_validator(mode="after")
    def _check(self) -> MacroSpace:
        if self.family not in FAMILIES:
            raise ValueError(unknown_choice("search family", self.family, FAMILIES))
        cls = MODELS.get(self.family).config
        assert cls is not None
        valid = [f for f in cls.model_fields if f != "name"]
        for key in [*self.choices, *self.fixed]:
            if key not in valid:
                raise ValueError(unknown_choice(f"{self.family} field", key, valid))
        both = set(self.choices) & set(self.fixed)
        if both:
            raise ValueError(f"fields both searched and fixed: {', '.join(sorted(both))}")
        for key, values in self.choices.items():
            if not values:
                raise ValueError(f"choices.{key} is empty: give at least one value")
            for v in values:  # every value must make a valid config on its own
                try:
                    cls(**{**self.fixed, key: v})
                except ValueError as exc:
                    first = str(exc).splitlines()[-1].strip()
                    raise ValueError(f"choices.{key}: value {v!r} is not valid: {first}") from None
        return self

    @property
    def size(self) -> int:
        """Number of distinct architectures."""
        return math.prod(len(v) for v in self.choices.values())

    def config(self, arch: dict[str, Any]) -> Any:
        """The family's validated model config for one architecture."""
        cls = MODELS.get(self.family).config
        assert cls is not None
        try:
            return cls(**{**self.fixed, **arch})
        except ValueError as exc:
            raise RecipeError(f"architecture {arch} is not a valid {self.family}: {exc}") from None

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One architecture, each field drawn uniformly from its values."""
        return {k: rng.choice(v) for k, v in self.choices.items()}

    def mutate(self, arch: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """A copy of ``arch`` with one field (of those with a choice) changed to another value."""
        open_ = [k for k, v in self.choices.items() if len(v) > 1]
        if not open_:
            return dict(arch)
        key = rng.choice(open_)
        child = dict(arch)
        child[key] = rng.choice([v for v in self.choices[key] if v != arch[key]])
        return child

    def key(self, arch: dict[str, Any]) -> str:
        """A stable text key of an architecture (for de-duplication and caching)."""
        return ",".join(f"{k}={arch[k]!r}" for k in sorted(self.choices))
