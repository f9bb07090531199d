"""template_bank: template id -> the precomputed template side of a fusion.

Each lookup checks the store for the newest version (one directory listing), so a
template added or replaced while the server runs serves on its next request; loaded
versions are cached. `postprocess` (on the cpu profile `fuse_faces`) holds a bank too and
asks for the version that `template_bank` resolved, so both stages of one request see the
same template.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from facefuse.templates import TemplateArtifact, TemplateStore


class TemplateBank:
    def __init__(self, store: TemplateStore, cache_size: int = 64, with_image: bool = True, analysis: str | None = None):
        """with_image=False: the template_bank stage, which never sends the image on.
        analysis: serve the faces as that model release analysed them (a template_bank version's)."""
        self.store = store
        self.analysis = analysis
        self.cache_size = cache_size
        self.with_image = with_image
        self._cache: OrderedDict[tuple[str, int], TemplateArtifact] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, template_id: str, version: int | None = None) -> TemplateArtifact:
        """The given version, or the newest one."""
        # (id, version) names one artifact for good: the store never reuses a version.
        key = (template_id, version or self.store.latest_version(template_id))
        with self._lock:
            artifact = self._cache.get(key)
            if artifact is not None:
                self._cache.move_to_end(key)
                return artifact
        artifact = self.store.load(*key, with_image=self.with_image, analysis=self.analysis)
        with self._lock:
            self._cache[key] = artifact
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return artifact

    def lookup(self, template_id: str, face_indices: np.ndarray):
        """(version, faces, meshes, affines) of the newest version, for the given face indices."""
        artifact = self.get(template_id)
        faces, meshes, affines = artifact.select(face_indices)
        return artifact.version, faces, meshes, affines
