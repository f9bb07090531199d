"""beautify on the cpu profile: the ONNX program, run only for the faces that ask for beauty.

The program is the identity at strength 0, bit for bit; running it there would only
spend CPU, so requests whose four values are all 0 pass their faces and masks through
(the gpu profile runs the program for every request, batched, on the onnxruntime backend).
"""

from __future__ import annotations

import numpy as np

from facefuse.server.onnx_runner import TritonPythonModel as OnnxRunner

PASS_THROUGH = {"beautified_faces": "faces", "beautified_masks": "face_masks"}


def run_where_asked(feeds: dict[str, np.ndarray], output_names: list[str], run) -> list[np.ndarray]:
    """run(feeds) on the batch rows whose `beauty` is not all 0; the other rows' outputs are their inputs."""
    asked = np.any(feeds["beauty"] != 0, axis=1)
    if asked.all():
        return run(feeds)
    outputs = [feeds[PASS_THROUGH[name]].copy() for name in output_names]
    if asked.any():
        rows = np.nonzero(asked)[0]
        for out, part in zip(outputs, run({k: v[rows] for k, v in feeds.items()})):
            out[rows] = part
    return outputs


class TritonPythonModel(OnnxRunner):
    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return run_where_asked(feeds, self.output_names, super()._run)
