"""beautify on the cpu profile: the ONNX program, run only for the faces that ask for beauty.

The program is the identity at strength 0, bit for bit; running it there would only
spend CPU, so requests whose four values are all 0 pass their faces and masks through
(the gpu profile runs the program for every request, batched, on the onnxruntime backend).
"""

from __future__ import annotations

import numpy as np

from facefuse.server.onnx_runner import TritonPythonModel as OnnxRunner
from facefuse.stages.beauty import run_where_asked


class TritonPythonModel(OnnxRunner):
    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return run_where_asked(feeds, self.output_names, super()._run)
