"""Versioned template artifacts: a template image analysed once, stored for serving.

Layout: <root>/<template id>/<version>/template.npz, versions numbered 1, 2, ... like
Triton model versions. The newest version serves; `add` on an existing id writes the
next version and keeps the previous few for rollback. A version number is never used
twice for an id, even after `remove`, so (id, version) names one artifact for good and
the serving stages can cache by it. Writes go to a hidden temporary
directory renamed into place, so a reader never sees half an artifact.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefuse.errors import OptionError, Reason, TemplateError
from facefuse.fileperms import share
from facefuse.vision.alignment import scale_crops, working_crop_px
from facefuse.vision.detail import TemplateFaceDetail, template_face_detail

TEMPLATE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ARTIFACT_NAME = "template.npz"
# Small summary beside the artifact, for listings that should not load pixels.
INFO_NAME = "info.json"
KEEP_VERSIONS = 3
# Left by `remove`: the id's last version number, so that a later `add` continues after it.
LAST_VERSION_NAME = ".last-version"
# Beside the artifact: the same faces analysed by other model versions (facefuse.models_admin).
ANALYSIS_PREFIX = "analysis-"


@dataclass(frozen=True)
class TemplateArtifact:
    template_id: str
    version: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    faces: np.ndarray  # (K, F, F, 3) uint8, faces numbered left to right
    meshes: np.ndarray  # (K, 468, 3) float32, crop pixels
    affines: np.ndarray  # (K, 2, 3) float32, image -> crop
    boxes: np.ndarray  # (K, 5) float32, x0, y0, x1, y1, score
    source: str = ""

    @property
    def face_count(self) -> int:
        return int(self.faces.shape[0])

    def select(self, face_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces, meshes and affines for the requested template face indices, at the
        template's working size."""
        indices = np.asarray(face_indices, dtype=np.int64).reshape(-1)
        bad = [int(i) for i in indices if not 0 <= i < self.face_count]
        if bad or indices.size == 0:
            raise TemplateError(
                f"template {self.template_id!r} has faces 0..{self.face_count - 1}; "
                f"face index {bad or 'list'} is {'out of range' if bad else 'empty'}",
                Reason.TEMPLATE_FACE_NOT_FOUND,
            )
        faces, meshes, affines = self.working_side
        return faces[indices], meshes[indices], affines[indices]

    def paste_details(self, affines: np.ndarray, crop_px: int) -> list[TemplateFaceDetail | None]:
        """The detail statistics of the faces these affines paste into (measured once per
        face and working size: the poster and its faces do not change)."""
        key = (np.asarray(affines, np.float32).tobytes(), crop_px)
        details = self._paste_details.get(key)
        if details is None:
            details = [template_face_detail(self.image, affine, crop_px) for affine in affines]
            self._paste_details[key] = details
        return details

    @functools.cached_property
    def _paste_details(self) -> dict:
        return {}

    @functools.cached_property
    def working_side(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces, meshes and affines at the size `fuse` works at for this template: the
        smallest that shows its faces as large as they are in the poster."""
        return scale_crops(self.faces, self.meshes, self.affines, working_crop_px(self.affines))


def _info(artifact: TemplateArtifact, version: int) -> dict:
    height, width = artifact.image.shape[:2]
    return {"template_id": artifact.template_id, "version": version, "face_count": artifact.face_count,
            "width": int(width), "height": int(height), "source": artifact.source}


def check_template_id(template_id: str) -> str:
    if not TEMPLATE_ID_PATTERN.match(template_id or ""):
        # Echo a bounded, escaped prefix only: the message travels in gRPC trailers and logs.
        shown = repr(template_id[:32]) + (f"... ({len(template_id)} characters)" if len(template_id) > 32 else "")
        raise OptionError(
            f"template id {shown} is invalid; use 1-64 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return template_id


class VersionedDirs:
    """<root>/<id>/<version>/ directories, each holding a `marker` file once complete;
    shared by the photo and the video template stores."""

    marker = ARTIFACT_NAME
    noun = "template"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, template_id: str) -> Path:
        return self.root / check_template_id(template_id)

    def versions(self, template_id: str) -> list[int]:
        directory = self._dir(template_id)
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / self.marker).is_file())

    def latest_version(self, template_id: str) -> int:
        versions = self.versions(template_id)
        if not versions:
            raise TemplateError(
                f"{self.noun} {template_id!r} is not registered; list them with `facefuse templates list`"
            )
        return versions[-1]

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if TEMPLATE_ID_PATTERN.match(p.name) and self.versions(p.name))


class TemplateStore(VersionedDirs):
    def load(self, template_id: str, version: int | None = None, with_image: bool = True,
             analysis: str | None = None) -> TemplateArtifact:
        """with_image=False leaves `image` empty (0x0x3) and skips reading it: for callers
        that need only the faces, as a poster can be many megapixels. analysis: the faces
        as another detector/landmarks release analysed them (see `add_analysis`)."""
        version = version or self.latest_version(template_id)
        path = self._dir(template_id) / str(version) / ARTIFACT_NAME
        if not path.is_file():
            raise TemplateError(f"template {template_id!r} has no version {version}")
        faces_path = self.analysis_path(template_id, version, analysis) if analysis else path
        if not faces_path.is_file():
            raise TemplateError(f"template {template_id!r} version {version} is not analysed for models {analysis}")
        with np.load(path, allow_pickle=False) as data, np.load(faces_path, allow_pickle=False) as faces:
            meta = json.loads(str(data["meta"]))
            return TemplateArtifact(
                template_id=template_id, version=version,
                image=data["image"] if with_image else np.empty((0, 0, 3), np.uint8), faces=faces["faces"],
                meshes=faces["meshes"], affines=faces["affines"], boxes=faces["boxes"], source=meta.get("source", ""),
            )

    def analysis_path(self, template_id: str, version: int, analysis: str) -> Path:
        return self._dir(template_id) / str(version) / f"{ANALYSIS_PREFIX}{analysis}.npz"

    def add_analysis(self, template_id: str, version: int, analysis: str, artifact: TemplateArtifact) -> Path:
        """The faces of a stored version as other detector/landmarks versions see them, kept
        beside the artifact: a template is only ever fused with meshes of one release."""
        path = self.analysis_path(template_id, version, analysis)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".staging-", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, faces=artifact.faces, meshes=artifact.meshes, affines=artifact.affines, boxes=artifact.boxes)
            share(tmp)  # template_bank runs as tritonserver's user (facefuse.fileperms)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def info(self, template_id: str) -> dict:
        """template_id, version, face_count, width, height, source of the serving version."""
        version = self.latest_version(template_id)
        path = self._dir(template_id) / str(version) / INFO_NAME
        if path.is_file():
            return json.loads(path.read_text())
        return _info(self.load(template_id, version), version)  # stored before info files existed

    def add(self, artifact: TemplateArtifact) -> int:
        """Store as the next version of its id; returns that version."""
        directory = self._dir(artifact.template_id)
        directory.mkdir(parents=True, exist_ok=True)
        marker = directory / LAST_VERSION_NAME
        removed = int(marker.read_text()) if marker.is_file() else 0
        version = max(removed, *self.versions(artifact.template_id), 0) + 1
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
        try:
            np.savez(
                staging / ARTIFACT_NAME, image=artifact.image, faces=artifact.faces, meshes=artifact.meshes,
                affines=artifact.affines, boxes=artifact.boxes,
                meta=np.array(json.dumps({"source": artifact.source})),
            )
            (staging / INFO_NAME).write_text(json.dumps(_info(artifact, version), indent=2) + "\n")
            share(staging)  # template_bank runs as tritonserver's user (facefuse.fileperms)
            staging.rename(directory / str(version))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for old in self.versions(artifact.template_id)[:-KEEP_VERSIONS]:
            shutil.rmtree(directory / str(old), ignore_errors=True)
        return version

    def remove(self, template_id: str) -> None:
        directory = self._dir(template_id)
        versions = self.versions(template_id)
        if not versions:
            raise TemplateError(f"template {template_id!r} is not registered")
        (directory / LAST_VERSION_NAME).write_text(f"{versions[-1]}\n")
        for version in versions:
            shutil.rmtree(directory / str(version))
