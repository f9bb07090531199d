"""The model build pipeline: package weights -> ONNX (-> TensorRT) + Triton configs."""
