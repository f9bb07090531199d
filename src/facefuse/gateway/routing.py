"""Which model release makes a call: the serving one, or the canary's share for the candidate.

`facefuse models canary|promote|rollback` write the release state file
(facefuse.models_admin.releases) beside the model repository; the gateway re-reads it
when it changed, at most every `reread_s`. A call is routed once, up front: every
Triton call it makes goes to that release's ensembles (`face_fusion_r<N>`, ...), whose
steps pin the release's model versions, so a poster is made entirely by one release.
Without a state file (nothing ever published) calls go to the plain ensembles.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Callable

from facefuse.models_admin.releases import ReleaseState, release_ensemble

log = logging.getLogger("facefuse.gateway")

RELEASE_HEADER = "facefuse-release"


class ReleaseRouter:
    def __init__(self, state_file: Path | None, reread_s: float = 0.5, draw: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic):
        self.state_file = Path(state_file) if state_file else None
        self.reread_s = reread_s
        self._draw, self._clock = draw, clock
        self._state: ReleaseState | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")

    def state(self) -> ReleaseState | None:
        now = self._clock()
        if self.state_file is None or now - self._checked_at < self.reread_s:
            return self._state
        self._checked_at = now
        try:
            stat = self.state_file.stat()
        except FileNotFoundError:
            self._state, self._stamp = None, None
            return None
        stamp = (stat.st_mtime_ns, stat.st_ino)  # written by rename: a new inode each time
        if stamp != self._stamp:
            try:
                self._state = ReleaseState.from_json(json.loads(self.state_file.read_text()))
                self._stamp = stamp
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Keep routing by the last good state rather than fail calls.
                log.warning("release state %s unreadable (%s); keeping the last one", self.state_file, exc)
        return self._state

    def choose(self) -> int | None:
        state = self.state()
        if state is None:
            return None
        if state.candidate is not None and self._draw() * 100.0 < state.canary_percent:
            return state.candidate
        return state.serving

    @staticmethod
    def model(ensemble: str, release: int | None) -> str:
        return ensemble if release is None else release_ensemble(ensemble, release)
