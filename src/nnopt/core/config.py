"""The config base class and the constrained types every config shares."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base for every config: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# A seed: what torch, NumPy and Python's random all accept (after the offsets steps add).
Seed = Annotated[int, Field(ge=0, lt=2 ** 62)]
# Training epochs: above this a value can only be a typo (a year of CPU time per epoch count).
Epochs = Annotated[int, Field(ge=1, le=100_000)]
# A batch size: above this no batch fits in memory.
BatchSize = Annotated[int, Field(ge=1, le=2 ** 20)]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$"  # a name that is never a path
FACTORY = r"^[\w.]+:[\w.]+$"  # 'package.module:function'
