"""The model zoo; every model is registered by name with a pydantic config and a tiny variant."""

from nnopt.models import cnn, cnn1d, darts, factory, lenet, minilm, mlp, resnet, vit  # noqa: F401
from nnopt.models.base import ModelConfig, NnoptModel, Normalize, build_model
from nnopt.models.saving import load_model, save_model

__all__ = ["ModelConfig", "NnoptModel", "Normalize", "build_model", "load_model", "save_model"]
