"""The model zoo; every model is registered by name with a pydantic config and a tiny variant."""

from nnopt.models import (  # noqa: F401
    capsnet, cnn, cnn1d, convattn, darts, factory, lenet, minilm, mlp, resnet, vit, wann)
from nnopt.models.base import ModelConfig, NnoptModel, Normalize, build_model
from nnopt.models.saving import load_model, save_model

__all__ = ["ModelConfig", "NnoptModel", "Normalize", "build_model", "load_model", "save_model"]
