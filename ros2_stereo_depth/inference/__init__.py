"""Inference backends: tensorrt, onnxruntime, torch (see make_backend)."""
