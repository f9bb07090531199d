"""Releases: which version of each network serves, which is on canary, what to roll back to.

A release is a numbered set of network versions, e.g. {face_detector: 1,
face_landmarks: 1, fuse: 2}. Each kept release has its own ensembles
(`face_analyze_r<N>`, `face_fuse_r<N>`, `face_fusion_r<N>`) whose steps pin those
versions, so a call sent to one of them is made entirely by that release. The gateway
picks the release per call (see facefuse.gateway.routing) from the state file
written here: `serving`, and a `candidate` with a `canary_percent` share.

The state lives beside the repository (`<model_repository>/.releases.json`), so a
restarted server serves the promoted release, not the newest version directory, and
a copy of the repository carries its state along. Every change is appended to the
audit log beside it (`.audit.jsonl`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from facefuse.models_admin.versions import VERSIONED_MODELS, actor

STATE_NAME = ".releases.json"
AUDIT_NAME = ".audit.jsonl"
ENSEMBLE_NAMES = ("face_analyze", "face_fuse", "face_fusion")


def state_path(repository: Path) -> Path:
    return Path(repository) / STATE_NAME


def audit_path(repository: Path) -> Path:
    return Path(repository) / AUDIT_NAME


def release_ensemble(ensemble: str, release: int) -> str:
    """The ensemble of one release: every step pinned to that release's versions."""
    return f"{ensemble}_r{release}"


@dataclass
class Release:
    versions: dict[str, int]
    created_by: str = ""
    created_at: str = ""
    gate: dict = field(default_factory=dict)  # the gate report; {"passed": True, ...} once checked


@dataclass
class ReleaseState:
    releases: dict[int, Release]
    serving: int
    previous: int | None = None
    candidate: int | None = None
    canary_percent: float = 0.0
    # The detector/landmarks versions that analysed the templates' own artifacts, which
    # template_bank version 1 serves (facefuse.models_admin.template_analysis).
    base_analysis: dict[str, int] = field(default_factory=dict)

    def kept(self) -> list[int]:
        """Releases whose ensembles and versions stay loaded: serving, rollback target, candidate."""
        return sorted({r for r in (self.serving, self.previous, self.candidate) if r is not None})

    def loaded_versions(self, model: str) -> list[int]:
        return sorted({self.releases[r].versions.get(model, 1) for r in self.kept()})

    def serving_versions(self) -> dict[str, int]:
        return dict(self.releases[self.serving].versions)

    def next_release(self) -> int:
        return max(self.releases) + 1

    def to_json(self) -> dict:
        return {
            "releases": {str(n): asdict(r) for n, r in sorted(self.releases.items())},
            "serving": self.serving, "previous": self.previous, "candidate": self.candidate,
            "canary_percent": self.canary_percent, "base_analysis": self.base_analysis,
        }

    @classmethod
    def from_json(cls, data: dict) -> "ReleaseState":
        releases = {int(n): Release(**r) for n, r in data["releases"].items()}
        state = cls(releases, int(data["serving"]), data.get("previous"), data.get("candidate"),
                    float(data.get("canary_percent", 0.0)), dict(data.get("base_analysis", {})))
        for name in ("serving", "previous", "candidate"):
            number = getattr(state, name)
            if number is not None and number not in releases:
                raise ValueError(f"{name} release {number} is not among the releases {sorted(releases)}")
        if not 0.0 <= state.canary_percent <= 100.0:
            raise ValueError(f"canary_percent {state.canary_percent} is outside 0..100")
        return state


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load_state(repository: Path) -> ReleaseState | None:
    """None while no release was ever published (plain ensembles, newest versions)."""
    path = state_path(repository)
    if not path.is_file():
        return None
    return ReleaseState.from_json(json.loads(path.read_text()))


def save_state(repository: Path, state: ReleaseState) -> None:
    """Atomic: the gateway re-reads this file while calls are running."""
    path = state_path(repository)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-releases-")
    with os.fdopen(fd, "w") as handle:
        json.dump(state.to_json(), handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


LOCK_NAME = ".releases.lock"


@contextlib.contextmanager
def release_lock(repository: Path, waiting: Callable[[], None] | None = None):
    """Held by each command that changes the release state (publish, canary, promote,
    rollback): each reads the state, changes it and writes it back, so two at once
    would lose one's change. A second command waits (after calling `waiting`) until
    the first is done; the lock goes with its process, however that ends."""
    fd = os.open(Path(repository) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def first_state(newest: dict[str, int]) -> ReleaseState:
    """Release 1: the versions that serve before anything was ever published."""
    missing = [m for m in VERSIONED_MODELS if m not in newest]
    if missing:
        raise ValueError(f"models {missing} have no built version; run `facefuse models build`")
    versions = {**newest, "template_bank": 1}
    return ReleaseState({1: Release(versions, actor(), now(), {"passed": True, "note": "as built"})}, serving=1,
                        base_analysis={m: newest[m] for m in ("face_detector", "face_landmarks")})


def audit(repository: Path, action: str, **details) -> dict:
    """One JSON line per swap: who, what, when, and the gate figures when there are some."""
    entry = {"at": now(), "by": actor(), "action": action, **details}
    with open(audit_path(repository), "a") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
    return entry


def read_audit(repository: Path) -> list[dict]:
    path = audit_path(repository)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def serving_version(repository: Path, model: str) -> int:
    """The version that serves: the serving release's, or the newest where none was published."""
    from facefuse.models_admin.versions import versions

    state = load_state(repository)
    if state is not None:
        return state.releases[state.serving].versions[model]
    found = versions(repository, model)
    return found[-1] if found else 1


def serving_model_path(repository: Path, model: str) -> Path:
    return Path(repository) / model / str(serving_version(repository, model)) / "model.onnx"
