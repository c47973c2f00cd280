"""Find the teacher a recipe names: the baseline, an earlier stage, a saved model or a factory."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from nnopt.context import RunContext
from nnopt.core.errors import NnoptError
from nnopt.models.base import build_model, check_fits
from nnopt.models.factory import FactoryConfig, anchor_factory
from nnopt.models.saving import load_model


def resolve_teacher(ref: str, ctx: RunContext) -> nn.Module:
    """The teacher model for ``ref`` (see DistillConfig.teacher), checked against the data."""
    base = Path(ctx.recipe.source).parent if ctx.recipe.source else Path.cwd()
    if ref == "baseline":
        if ctx.baseline is None:
            raise NnoptError("teacher 'baseline' is the first stage's model, but no stage ran "
                             "before this one; train a teacher first or name a saved model folder")
        teacher = ctx.baseline
    elif ref in ctx.models:
        teacher = ctx.models[ref]
    elif (base / Path(ref).expanduser()).is_dir():  # relative: from the recipe's folder
        teacher = load_model(base / Path(ref).expanduser(), trust=ctx.recipe.trusted())
    elif ":" in ref:
        d = ctx.data
        teacher = build_model(FactoryConfig(factory=anchor_factory(ref, base)), d.input_shape,
                              d.num_classes, d.mean, d.std)
    else:
        raise NnoptError(f"teacher '{ref}' is not 'baseline', an earlier stage ("
                         f"{', '.join(ctx.models) or 'none yet'}), a saved model folder or a "
                         "'package.module:function' factory")
    check_fits(teacher, ctx.data, f"teacher {ref}")
    return teacher.eval()
