"""The model zoo; every model is registered by name with a pydantic config and a tiny variant."""

from nnopt.models.base import ModelConfig, NnoptModel, Normalize, build_model
from nnopt.models.saving import load_model, save_model

__all__ = ["ModelConfig", "NnoptModel", "Normalize", "build_model", "load_model", "save_model"]
