"""User-facing errors: each carries a one-line message that names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NnoptError(Exception):
    """An error caused by the user's input (recipe, data, files); the CLI prints it on one line."""


class RecipeError(NnoptError):
    """The recipe is invalid: unknown key, wrong type or value, unknown step/model/dataset."""


class DataError(NnoptError):
    """A dataset is missing, corrupt or does not fit the model."""


class ModelFileError(NnoptError):
    """A saved model (safetensors + spec) is missing or corrupt."""


class TrainingError(NnoptError):
    """Training stopped: a non-finite loss or a similar failure, with the stage named."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message (``default``, else its type's name, when the
    message is empty): what a one-line error quotes of a library's multi-line one."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if default is None else default


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    """Message for an unknown name: names the bad value, a close match and all valid choices."""
    choices = sorted(choices)
    return (
        f"unknown {kind} '{value}'{did_you_mean(value, choices)}; "
        f"valid choices: {', '.join(choices)}"
    )
