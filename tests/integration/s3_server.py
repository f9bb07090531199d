"""A real S3 API on a free port: moto's server mode (the `moto[server]` package), for the
presigned-URL tests. moto keeps objects in memory and does not check signatures or URL
expiry, so those two are AWS's (or MinIO's) behaviour, not tested here."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from facefuse.server.triton import free_port


@contextlib.contextmanager
def s3_server():
    """Yields the endpoint URL (http://127.0.0.1:PORT)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"moto_server did not start:\n{process.stdout.read()}")
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)
