"""ONNX Runtime sessions configured the same way everywhere they are created."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def onnx_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with a fixed thread budget: Triton instances and baseline workers
    each get `threads` cores instead of all of them fighting over every core."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
