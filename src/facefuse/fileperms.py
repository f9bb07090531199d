"""Modes of what tritonserver reads: models, configs and templates.

They hold no secret, and tritonserver runs as its own unprivileged user
(`server/launch.py`), so they are readable by everyone and writable by their owner
only. Temporary files and directories start private (mkstemp 0600, mkdtemp 0700):
whatever is made in one and published for the server is shared before it is moved
into place, so a server never sees a version it cannot read.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED_DIR_MODE = 0o755
SHARED_FILE_MODE = 0o644


def share(path: Path | str) -> None:
    """`path` and, for a directory, everything below it: readable by all, not writable by others."""
    path = Path(path)
    if path.is_symlink():
        return
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, SHARED_DIR_MODE)
            for name in files:
                file = os.path.join(root, name)
                if not os.path.islink(file):
                    mode = os.stat(file).st_mode
                    os.chmod(file, SHARED_FILE_MODE | (0o111 if mode & 0o100 else 0))
    elif path.exists():
        os.chmod(path, SHARED_FILE_MODE | (0o111 if path.stat().st_mode & 0o100 else 0))


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically and shared; returns False (and touches nothing) when
    the content is the same."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    share(tmp)  # tritonserver runs as its own user
    os.replace(tmp, path)
    return True
