"""Quantization and deployment: ONNX export, int8 with ONNX Runtime, deployment choice."""

from nnopt.compress.quantize import export, qat_step, report, step  # noqa: F401  (registration)
