"""A real redis-server (Debian's package) on a free port, for the shared video queue.

Durable like production should run it: append-only file, fsync on every write.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from facefuse.server.triton import free_port


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `make setup` installs Debian's redis-server package")
    return binary


@contextlib.contextmanager
def redis_server(directory: Path, port: int | None = None):
    """Yields (url, port); the data stays in `directory`, so a restart on it resumes."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "yes"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start:\n{process.stdout.read()}")
                time.sleep(0.05)
        yield url, port
    finally:
        process.terminate()
        process.wait(timeout=30)
