"""Quantization and deployment: ONNX export, int8 with ONNX Runtime, deployment choice."""
