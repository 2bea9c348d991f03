"""Artifacts: weights, exported ONNX graphs and TensorRT engines, each with a JSON sidecar."""
