"""Serving on Triton: the embedded server, the Python-backend adapters, the ONNX runner."""
