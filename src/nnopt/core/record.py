"""Typed stage records: what a technique writes about a stage, shared by its report section and
results.json.

A record is a dataclass with a ``KEY``; ``ctx.record(rec)`` stores ``rec.to_json()`` in the
stage's details under that key, and the technique's report section reads it back with
``Rec.of(details)`` (also from a results.json written earlier: unknown keys are ignored,
missing optional ones take their defaults). Records are registered in RECORDS, so ``nnopt list
records`` and ``nnopt explain KEY`` document the schema of results.json's details.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from nnopt.core.registry import RECORDS

R = TypeVar("R", bound="Record")


@dataclasses.dataclass
class Record:
    """Base of every stage record."""

    KEY: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls: type[R], details: Mapping[str, Any]) -> R | None:
        """The record in a stage's details, or None when the stage has none. A value of
        another shape raises ValueError naming the record."""
        raw = details.get(cls.KEY)
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise ValueError(f"details['{cls.KEY}'] must be an object")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise ValueError(f"details['{cls.KEY}']: {exc}") from None


def record(cls: type[R]) -> type[R]:
    """Class decorator: make ``cls`` a dataclass and register it in RECORDS under its KEY."""
    cls = dataclasses.dataclass(cls)
    if not cls.KEY:
        raise ValueError(f"record {cls.__name__} needs a KEY")
    RECORDS.add(cls.KEY, _describe(cls))
    return cls


def _describe(cls: type) -> Callable[[], type]:
    def schema() -> type:
        return cls

    schema.__doc__ = cls.__doc__
    schema.__module__ = cls.__module__
    return schema
