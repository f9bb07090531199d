"""What a Python-backend stage answers, as plain data (no Triton import: unit-tested).

`server/adapter.py` and `server/onnx_runner.py` turn these into Triton responses.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from facefuse.errors import FacefuseError, Reason

_log = logging.getLogger("facefuse.server")

TRITON_CODES = {
    Reason.TEMPLATE_NOT_FOUND: "NOT_FOUND",
    Reason.TEMPLATE_FACE_NOT_FOUND: "NOT_FOUND",
    Reason.INTERNAL: "INTERNAL",
}


def failure(exc: Exception, request_id: str = "") -> tuple[str, str]:
    """(Triton error code name, message) for one request's failure.

    A FacefuseError carries its stable reason and a message written for the caller.
    Anything else is a bug: its type and text (paths, shapes, library internals) go to
    the server log with the request id, and the caller gets the reason and that id only.
    """
    if isinstance(exc, FacefuseError):
        return TRITON_CODES.get(exc.reason, "INVALID_ARG"), str(exc)
    _log.error("unexpected stage failure (request id %r)", request_id, exc_info=exc)
    where = f"request id {request_id}; " if request_id else ""
    return "INTERNAL", f"{Reason.INTERNAL.value}: the server failed to process this request ({where}details in its log)"


Feeds = dict[str, np.ndarray]


def run_batched(run: Callable[[Feeds], list[np.ndarray]], feeds: list[Feeds]) -> list[list[np.ndarray] | Exception]:
    """Each request's outputs (or its failure) from `run`, a network call over a batch.

    Requests whose shapes agree are concatenated along the batch axis and run in one
    call, then split back. When shapes differ (the batcher normally prevents it) each
    request runs alone, so one odd request costs only itself.
    """
    if not feeds:
        return []
    names = list(feeds[0])
    sizes = [f[names[0]].shape[0] for f in feeds]
    try:
        batch = {name: np.concatenate([f[name] for f in feeds]) for name in names}
    except ValueError:
        return [_run_one(run, f) for f in feeds]
    try:
        outputs = run(batch)
    except Exception as exc:  # noqa: BLE001 - every request of the batch gets this failure
        return [exc for _ in feeds]
    results, start = [], 0
    for size in sizes:
        results.append([o[start : start + size] for o in outputs])
        start += size
    return results


def _run_one(run, feed: Feeds) -> list[np.ndarray] | Exception:
    try:
        return run(feed)
    except Exception as exc:  # noqa: BLE001 - its own failure, answered to it alone
        return exc
