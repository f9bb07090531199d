"""Video templates: a clip analysed once, frame by frame, stored for serving.

Layout: <root>/<template id>/<version>/{clip.mp4, track.npz, info.json}, versions
numbered like photo templates (src/facefuse/templates.py) and with the same rules: the
newest serves, the previous few are kept, a number is never reused, and a version
appears whole (staged in a hidden directory, then renamed). track.npz holds per frame
the template face's affine (frame -> crop) and mesh, and whether the frame is fused at
all; the crops are cut from the decoded frames at fusion time (one warp each), which
keeps an artifact a few hundred kB besides the clip.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefuse.contract import FACE_CROP_PX
from facefuse.fileperms import share
from facefuse.errors import TemplateError
from facefuse.templates import KEEP_VERSIONS, LAST_VERSION_NAME, VersionedDirs
from facefuse.vision.alignment import scale_geometry, working_crop_px

CLIP_NAME = "clip.mp4"
TRACK_NAME = "track.npz"
INFO_NAME = "info.json"


@dataclass(frozen=True)
class VideoTemplate:
    template_id: str
    version: int
    clip: Path  # H.264 MP4, the frames fused into
    affines: np.ndarray  # (N, 2, 3) float32, frame -> face crop, smoothed over time
    meshes: np.ndarray  # (N, 468, 3) float32, crop pixels
    usable: np.ndarray  # (N,) bool: False where the face is lost or turned (frame left as is)
    info: dict  # width, height, fps, frame_count, duration_s, usable_frames, has_audio, source

    @property
    def frame_count(self) -> int:
        return int(self.usable.shape[0])

    @functools.cached_property
    def working_side(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(size, affines, meshes) for crops at the size `fuse` works at for this clip: the
        smallest that shows its face, in every usable frame, as large as the frame does."""
        usable = self.affines[self.usable]
        size = working_crop_px(usable) if len(usable) else FACE_CROP_PX
        meshes, affines = scale_geometry(self.meshes, self.affines, size / FACE_CROP_PX)
        return size, affines, meshes


class VideoTemplateStore(VersionedDirs):
    marker = TRACK_NAME
    noun = "video template"

    def info(self, template_id: str) -> dict:
        version = self.latest_version(template_id)
        return json.loads((self._dir(template_id) / str(version) / INFO_NAME).read_text())

    def load(self, template_id: str, version: int | None = None) -> VideoTemplate:
        """The given version or the newest: looked up per call, so a template added while
        the server runs serves on its next job (the photo templates' hot reload)."""
        version = version or self.latest_version(template_id)
        directory = self._dir(template_id) / str(version)
        if not (directory / TRACK_NAME).is_file():
            raise TemplateError(f"video template {template_id!r} has no version {version}")
        with np.load(directory / TRACK_NAME, allow_pickle=False) as track:
            affines, meshes, usable = track["affines"], track["meshes"], track["usable"]
        info = json.loads((directory / INFO_NAME).read_text())
        return VideoTemplate(template_id, version, directory / CLIP_NAME, affines, meshes, usable, info)

    def add(self, template_id: str, clip: Path, affines: np.ndarray, meshes: np.ndarray, usable: np.ndarray,
            info: dict) -> int:
        """Store clip (copied) and its track as the next version; returns that version."""
        directory = self._dir(template_id)
        directory.mkdir(parents=True, exist_ok=True)
        marker = directory / LAST_VERSION_NAME
        removed = int(marker.read_text()) if marker.is_file() else 0
        version = max(removed, *self.versions(template_id), 0) + 1
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
        try:
            shutil.copyfile(clip, staging / CLIP_NAME)
            np.savez(staging / TRACK_NAME, affines=affines.astype(np.float32), meshes=meshes.astype(np.float32),
                     usable=usable.astype(bool))
            info = {**info, "template_id": template_id, "version": version}
            (staging / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
            share(staging)  # read by tritonserver's user too (facefuse.fileperms)
            staging.rename(directory / str(version))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for old in self.versions(template_id)[:-KEEP_VERSIONS]:
            shutil.rmtree(directory / str(old), ignore_errors=True)
        return version

    def remove(self, template_id: str) -> None:
        versions = self.versions(template_id)
        if not versions:
            raise TemplateError(f"video template {template_id!r} is not registered")
        directory = self._dir(template_id)
        (directory / LAST_VERSION_NAME).write_text(f"{versions[-1]}\n")
        for version in versions:
            shutil.rmtree(directory / str(version))
