"""The gateway as its own process (`facefuse gateway run`), for benchmarks and load tests."""

from __future__ import annotations

import re
import subprocess
import sys
import threading


def _drain(stream) -> None:
    for _ in stream:
        pass


def start_gateway(triton_url: str, env: dict) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "facefuse.cli", "gateway", "run", "--port", "0", "--triton-url", triton_url],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    for line in process.stderr:
        match = re.search(r"listening on port (\d+)", line)
        if match:
            # The gateway logs a line per call: keep reading, or once the pipe's buffer
            # is full its logging blocks and so does every call.
            threading.Thread(target=_drain, args=(process.stderr,), name="gateway-stderr", daemon=True).start()
            return process, int(match.group(1))
    raise RuntimeError(f"the gateway exited with {process.wait()} before listening")
