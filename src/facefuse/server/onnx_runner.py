"""A Python-backend model that serves `model.onnx` with ONNX Runtime.

The embedded Triton (nvidia-pytriton's build) has no onnxruntime backend; this runner
stands in for it on the cpu profile. Triton's dynamic batcher hands it several
requests at once; they are concatenated along the batch axis, run in one session call
and split back, one response per request.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from facefuse.onnxrt import onnx_session
from facefuse.server.adapter import error_response, parameters, respond_each, response


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
        arrays = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names}
            for r in requests
        ]
        sizes = [a[self.input_names[0]].shape[0] for a in arrays]
        try:
            batch = {name: np.concatenate([a[name] for a in arrays]) for name in self.input_names}
        except ValueError:
            # Shapes differ between requests (the batcher normally prevents this): one by one.
            return respond_each(
                arrays, lambda a: response(**dict(zip(self.output_names, self._run(a))))
            )
        try:
            outputs = self._run(batch)
        except Exception as exc:  # noqa: BLE001
            return [error_response(exc) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            responses.append(response(**{n: o[start : start + size] for n, o in zip(self.output_names, outputs)}))
            start += size
        return responses
