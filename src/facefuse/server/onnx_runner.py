"""A Python-backend model that serves `model.onnx` with ONNX Runtime.

The embedded Triton (nvidia-pytriton's build) has no onnxruntime backend; this runner
stands in for it on the cpu profile. Triton's dynamic batcher hands it several
requests at once; they are concatenated along the batch axis, run in one session call
and split back, one response per request (facefuse.server.responses.run_batched).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from facefuse.onnxrt import onnx_session
from facefuse.server.adapter import error_response, parameters, response
from facefuse.server.responses import run_batched


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        threads = int(parameters(args).get("intra_op_threads", "1"))
        self.session = onnx_session(path, threads)
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feeds)

    def execute(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names}
                 for r in requests]
        return [error_response(result, request) if isinstance(result, Exception)
                else response(**dict(zip(self.output_names, result)))
                for request, result in zip(requests, run_batched(self._run, feeds))]
