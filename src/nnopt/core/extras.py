"""Optional dependencies by family: a step whose extra is missing says which, in one line.

The core install is torch, numpy, pydantic, pyyaml, safetensors, onnx, onnxruntime, matplotlib
(with pillow) and tqdm; everything else belongs to the extra of the techniques that need it (pyproject.toml).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nnopt.core.errors import NnoptError

# top-level module -> (the distribution to install, the nnopt extra that brings it)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch_pruning": ("torch-pruning", "prune"),
    "optuna": ("optuna", "search"),
    "ray": ("ray", "ray"),
    "cleanlab": ("cleanlab", "labels"),
    "sklearn": ("scikit-learn", "trust"),
    "mnist1d": ("mnist1d", "data"),
    "tokenizers": ("tokenizers", "text"),
    "openvino": ("openvino", "openvino"),
    "nncf": ("nncf", "openvino"),
    "executorch": ("executorch", "executorch"),
    "transformers": ("transformers", "hf"),
    "datasets": ("datasets", "hf"),
    "pyarrow": ("pyarrow", "tabular"),
    "mlflow": ("mlflow", "mlflow"),
    "tensorboard": ("tensorboard", "tensorboard"),
}


def require(module: str, needed_for: str = "", extra: str | None = None) -> ModuleType:
    """Import an optional package (``module`` is a key of EXTRAS, or a submodule of one);
    a missing one raises NnoptError naming the extra that installs it (``extra`` when a
    package serves several families, e.g. scikit-learn)."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but broken: its own error says more
        dist, family = EXTRAS[top]
        extra = extra or family
        what = f"{needed_for} needs" if needed_for else "this needs"
        raise NnoptError(f"{what} the optional package '{dist}': pip install 'nnopt[{extra}]' "
                         f"(or nnopt[all])") from None
