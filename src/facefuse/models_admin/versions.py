"""Version directories of the built networks and the provenance each one records.

`model_repository/<model>/<N>/` holds one version (model.onnx, the runner adapter,
the build or import record, the check report) and `version.json`: where it came from
(source weights, builder fingerprint, check report), who made it and when. A new
build or import always becomes N+1 next to the versions already there; nothing is
overwritten.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import time
from pathlib import Path

from facefuse.fileperms import share, write_if_changed

# The networks that have versions; the Python stages have one version each (1/).
VERSIONED_MODELS = ("face_detector", "face_landmarks", "fuse")
PROVENANCE_NAME = "version.json"
# The cpu profile's steps (facefuse.server.steps) run a network in-process with the stages
# around it. Step version N runs version N of its network, so a release names network
# versions only and every step follows its network: `sync_steps` keeps the directories
# in step, and configs and pinned ensembles give a step its network's versions.
STEP_NETWORKS = {"detect_faces": "face_detector", "mesh_faces": "face_landmarks", "fuse_faces": "fuse"}
# The models that verify a poster look at the fused faces with the serving release's
# face-mesh network (never a candidate's, which "latest" would pick): apply_state names
# its version in their configs, and promote and rollback reload them when it changes.
# postprocess (gpu profile) calls that version through BLS; fuse_faces (cpu profile)
# runs it in-process.
VERIFYING_MODELS = ("postprocess", "fuse_faces")
VERIFICATION_LANDMARKS = "verification_landmarks_version"
STEP_ADAPTER = '''"""Generated: {step} version {version} runs {network} version {version} in-process."""

from facefuse.server.steps import {cls} as TritonPythonModel  # noqa: F401
'''


def versions(repository: Path, model: str) -> list[int]:
    """Complete versions of a model (a directory with a model.onnx), oldest first."""
    directory = Path(repository) / model
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "model.onnx").is_file())


def next_version(repository: Path, model: str) -> int:
    """One more than any version directory ever seen (complete or not): numbers are never reused."""
    directory = Path(repository) / model
    taken = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
    return max([0, *taken, _removed_up_to(directory)]) + 1


def _removed_up_to(directory: Path) -> int:
    marker = directory / ".last-version"
    try:
        return int(marker.read_text())
    except (OSError, ValueError):
        return 0


def note_removed(repository: Path, model: str, version: int) -> None:
    """Keep the highest removed number so a later version never takes it again."""
    marker = Path(repository) / model / ".last-version"
    if version > _removed_up_to(marker.parent):
        marker.write_text(f"{version}\n")


def actor() -> str:
    """Who runs this command, for provenance and the audit log."""
    return os.environ.get("FACEFUSE_ACTOR") or getpass.getuser()


def write_provenance(version_dir: Path, origin: str, **details) -> dict:
    record = {
        "model": version_dir.parent.name,
        "version": int(version_dir.name) if version_dir.name.isdigit() else None,
        "origin": origin,
        "created_by": actor(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **details,
    }
    (version_dir / PROVENANCE_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return record


def provenance(repository: Path, model: str, version: int) -> dict:
    try:
        return json.loads((Path(repository) / model / str(version) / PROVENANCE_NAME).read_text())
    except (OSError, ValueError):
        return {}


KEEP_NEWEST = 2


def prune(repository: Path, model: str, keep: set[int] = frozenset(), keep_newest: int = KEEP_NEWEST) -> list[int]:
    """Remove versions that are neither in `keep` (loaded by a kept release) nor among the
    newest `keep_newest`; returns the removed numbers (never reused afterwards)."""
    found = versions(repository, model)
    removed = [v for v in found[:-keep_newest] if v not in keep] if keep_newest else [v for v in found if v not in keep]
    for version in removed:
        note_removed(repository, model, version)
        shutil.rmtree(Path(repository) / model / str(version), ignore_errors=True)
    return removed


def steps_of(network: str) -> list[str]:
    return [step for step, net in STEP_NETWORKS.items() if net == network]


def sync_steps(repository: Path, enabled: bool) -> None:
    """Make each step's version directories mirror its network's (enabled: the cpu profile),
    or remove the steps (the gpu profile serves the networks on their own).

    A step version holds only its model.py; the network file stays in the network's own
    version directory, which the step reads (facefuse.server.steps)."""
    for step, network in STEP_NETWORKS.items():
        directory = Path(repository) / step
        if not enabled:
            shutil.rmtree(directory, ignore_errors=True)
            continue
        wanted = set(versions(repository, network))
        directory.mkdir(parents=True, exist_ok=True)
        for version in wanted:
            adapter = directory / str(version) / "model.py"
            text = STEP_ADAPTER.format(step=step, network=network, version=version,
                                       cls="".join(part.title() for part in step.split("_")))
            write_if_changed(adapter, text)
        for stale in (p for p in directory.iterdir() if p.name.isdigit() and int(p.name) not in wanted):
            shutil.rmtree(stale, ignore_errors=True)
        share(directory)  # tritonserver runs as its own user (facefuse.fileperms)
