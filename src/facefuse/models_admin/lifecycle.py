"""publish -> (gates) -> canary -> promote -> rollback, against a running Triton.

Order matters for "no failed call": whatever a caller can be routed to is loaded
before the state file names it, and nothing is unloaded until the state has not
named it for longer than the gateway's re-read interval (`ROUTING_GRACE_S`).
Triton's reload keeps the loaded model serving until the new one is ready.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from facefuse.fileperms import share, write_if_changed
from facefuse.models_admin import gates, versions
from facefuse.models_admin.errors import GateFailed, NoReleaseState, ReleaseStateError
from facefuse.models_admin.pinning import apply_state, release_ensemble_dirs
from facefuse.models_admin.releases import (
    ENSEMBLE_NAMES, Release, ReleaseState, audit, first_state, load_state, now, release_ensemble, release_lock, save_state,
)
from facefuse.models_admin.template_analysis import (
    ANALYSIS_MODELS, analysis_key, new_template_bank_version, reanalyse_all,
)
from facefuse.models_admin.triton_admin import TritonAdmin
from facefuse.settings import Settings
from facefuse.templates import TemplateStore

GATE_REPORT = "model.gate.json"  # beside the build's model.check.json
# Longer than the gateway's re-read interval of the state file (gateway.routing).
ROUTING_GRACE_S = 2.0


def built_profile(repository: Path) -> str:
    """The profile the networks were built for (their build record), cpu if unknown."""
    for model in versions.VERSIONED_MODELS:
        found = versions.versions(repository, model)
        if found:
            try:
                return json.loads((repository / model / str(found[-1]) / "model.build.json").read_text())["profile"]
            except (OSError, ValueError, KeyError):
                pass
    return "cpu"


# What `facefuse models` runs: each checks the admin key before it changes anything.
COMMANDS = ("publish", "canary", "promote", "rollback")


def _changes_release_state(method):
    """Run the method holding the repository's release lock (releases.release_lock);
    calls it makes to other such methods of the same admin reuse the lock."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        if self._holds_lock:
            return method(self, *args, **kwargs)
        waiting = lambda: self.log("another `facefuse models` command is changing the releases; waiting for it")  # noqa: E731
        with release_lock(self.repository, waiting):
            if method.__name__ in COMMANDS:
                # A wrong or missing admin key fails here, before a version is imported
                # or the state changed: half a publish could not be undone without it.
                self.admin.check_access()
            self._holds_lock = True
            try:
                return method(self, *args, **kwargs)
            finally:
                self._holds_lock = False
    return locked


@dataclass
class ModelAdmin:
    settings: Settings
    admin: TritonAdmin
    log: Callable[[str], None] = print
    margins: gates.GateMargins = field(default_factory=gates.GateMargins)
    _holds_lock: bool = field(default=False, init=False, repr=False)

    @property
    def repository(self) -> Path:
        return self.settings.model_repository_dir

    # ---- configs -----------------------------------------------------------------
    def _write_configs(self, state: ReleaseState) -> list[str]:
        """Writes the configs the state decides; returns the verifying models whose config
        changed (they must be reloaded: `_reload_verifiers`)."""
        from facefuse_build import configs
        from facefuse_build.configs import Profile

        profile = Profile(built_profile(self.repository))
        # The template folder the build wrote into the stages' configs stays as it is.
        built = re.search(r'key: "template_dir"\s*value\s*\{\s*string_value: "([^"]*)"',
                          _read(self.repository / "template_bank" / "config.pbtxt"))
        settings = self.settings.model_copy(update={"template_dir": Path(built.group(1))}) if built else self.settings
        models, ensembles = apply_state(*configs.repository_configs(profile, settings), state)
        # A step's versions mirror its network's (a version imported or removed since).
        versions.sync_steps(self.repository, profile.in_process_steps)
        written = {*versions.VERSIONED_MODELS, "template_bank", *versions.STEP_NETWORKS, *versions.VERIFYING_MODELS}
        changed = [name for name in written
                   if name in models and write_if_changed(self.repository / name / "config.pbtxt", configs.pbtxt(models[name]))]
        for name, config in ensembles.items():
            (self.settings.ensembles_dir / name / "1").mkdir(parents=True, exist_ok=True)
            write_if_changed(self.settings.ensembles_dir / name / "config.pbtxt", configs.pbtxt(config))
        return [name for name in versions.VERIFYING_MODELS if name in changed]

    def _reload_verifiers(self, changed: list[str]) -> None:
        """Verifying models whose config names another face_landmarks version: reloaded
        before that version can be unloaded (Triton serves the old instances until then)."""
        for name in changed:
            self.admin.load(name)

    def _load_network(self, model: str) -> None:
        """Load (or reload with its new version list) a versioned model, then the cpu
        profile's step built on it if any: both serve the same versions before an ensemble
        names one."""
        self.admin.load(model)
        for step in versions.steps_of(model):
            if (self.repository / step / "config.pbtxt").is_file():
                self.admin.load(step)

    def _load_release(self, release: int) -> None:
        for name in ENSEMBLE_NAMES:
            self.admin.load(release_ensemble(name, release))

    def _reload_plain_ensembles(self) -> None:
        for name in ENSEMBLE_NAMES:
            self.admin.load(name)

    def _loaded_version(self, model: str) -> int:
        """The version Triton serves now (a build may have added newer ones since it started)."""
        found = versions.versions(self.repository, model)
        ready = [v for v in found if self.admin.ready(model, str(v))]
        return (ready or found)[-1]

    def state(self) -> ReleaseState:
        """The release state on disk. Reads only: `ensure_initialised` creates it."""
        state = load_state(self.repository)
        if state is None:
            raise NoReleaseState(f"{self.repository} has no release state yet; the first `facefuse models publish`, "
                                 "canary, promote or rollback creates it from the versions Triton serves now")
        return state

    @_changes_release_state
    def ensure_initialised(self) -> ReleaseState:
        """The release state, created on first use (`_initialise`) if there is none yet."""
        try:
            return self.state()
        except NoReleaseState:
            return self._initialise()

    def _initialise(self) -> ReleaseState:
        """Release 1 from the versions that serve now: configs pinned to them, models and
        the release's ensembles loaded, then the state saved and audited."""
        state = first_state({m: self._loaded_version(m) for m in versions.VERSIONED_MODELS
                             if versions.versions(self.repository, m)})
        # Pin everything before any second version can exist: "latest" would pick a candidate.
        changed = self._write_configs(state)
        for name in versions.VERSIONED_MODELS:
            self._load_network(name)
        # fuse_faces, a step, was reloaded with its network above
        self._reload_verifiers([name for name in changed if name not in versions.STEP_NETWORKS])
        self._load_release(state.serving)
        self._reload_plain_ensembles()
        save_state(self.repository, state)
        audit(self.repository, "init", release=state.serving, versions=state.serving_versions())
        return state

    # ---- publish ---------------------------------------------------------------------
    def _import(self, model: str, source: Path) -> int:
        from facefuse_build.pipeline import RUNNER_ADAPTER

        if not source.is_file():
            raise ReleaseStateError(f"{source} does not exist; pass the path of an ONNX file")
        directory = self.repository / model
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
        version = versions.next_version(self.repository, model)
        try:
            shutil.copyfile(source, staging / "model.onnx")
            (staging / "model.py").write_text(RUNNER_ADAPTER)
            (staging / "model.build.json").write_text(json.dumps({"profile": built_profile(self.repository)}) + "\n")
            versions.write_provenance(staging, "import", version=version, source_file=str(source.resolve()),
                                      source_sha256=_sha256(source), check_report=GATE_REPORT)
            share(staging)  # tritonserver runs as its own user (facefuse.fileperms)
            staging.rename(directory / str(version))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return version

    @_changes_release_state
    def publish(self, model: str, source: Path | None = None, version: int | None = None) -> tuple[int, dict]:
        """A new version as the candidate release, loaded and gated; (release, gate report)."""
        if model not in versions.VERSIONED_MODELS:
            raise ReleaseStateError(f"{model!r} has no versions; publish one of {', '.join(versions.VERSIONED_MODELS)}")
        state = self.ensure_initialised()
        if state.candidate is not None:
            raise ReleaseStateError(f"release {state.candidate} is already the candidate; promote it or "
                                    "`facefuse models rollback` to discard it first")
        imported = source is not None
        if imported:
            version = self._import(model, Path(source))
        elif version is None or version not in versions.versions(self.repository, model):
            raise ReleaseStateError(f"{model} has no built version {version}; versions: "
                                    f"{versions.versions(self.repository, model)}")
        if any(r.versions.get(model) == version for r in state.releases.values()):
            raise ReleaseStateError(f"{model} version {version} is already in release(s) "
                                    f"{[n for n, r in state.releases.items() if r.versions.get(model) == version]}")
        version_dir = self.repository / model / str(version)
        serving = state.serving_versions()
        self.log(f"{model} version {version}: numerics check against version {serving[model]}")
        try:
            numerics = gates.numerics_check(model, version_dir / "model.onnx", self.repository, serving,
                                            built_profile(self.repository), version_dir / GATE_REPORT)
        except GateFailed as failed:
            audit(self.repository, "gate-failed", model=model, version=version, gate=failed.report)
            if imported:
                self._remove_version(model, version)
            raise
        release = state.next_release()
        chosen = {**serving, model: version}
        templates = None
        if model in ANALYSIS_MODELS:
            # Templates hold meshes made by the detector and landmarks: re-analysed by the
            # candidate's pair, served by a template_bank version of its own.
            key = analysis_key(chosen)
            self.log(f"{model} version {version}: re-analysing the templates with models {key}")
            try:
                templates = reanalyse_all(self.settings, chosen, key)
            except GateFailed as failed:
                audit(self.repository, "gate-failed", model=model, version=version, gate=failed.report)
                if imported:
                    self._remove_version(model, version)
                raise
            chosen["template_bank"] = new_template_bank_version(self.repository, key)
        state.releases[release] = Release(chosen, versions.actor(), now())
        state.candidate, state.canary_percent = release, 0.0
        self.log(f"release {release} ({model} {version}): loading into Triton")
        self._write_configs(state)
        save_state(self.repository, state)  # candidate at 0%: loaded, gated, but routed nowhere
        try:
            self._load_network(model)
            if chosen.get("template_bank", 1) != serving.get("template_bank", 1):
                self.admin.load("template_bank")
            self._load_release(release)
            self.log(f"release {release}: golden-set gate against release {state.serving}")
            golden = gates.golden_gate(self.admin, state.serving, release,
                                       TemplateStore(self.settings.templates_path), self.margins)
        except Exception as exc:  # a failed gate, or a load Triton refused: the candidate goes
            self._discard(state, release, remove_version=imported)
            failure = exc.report if isinstance(exc, GateFailed) else {"error": f"{type(exc).__name__}: {exc}"}
            audit(self.repository, "gate-failed", model=model, version=version, release=release,
                  gate={"numerics": numerics, "templates": templates, "golden": failure})
            raise
        state.releases[release].gate = {"passed": True, "numerics": numerics, "templates": templates, "golden": golden}
        save_state(self.repository, state)
        audit(self.repository, "publish", model=model, version=version, release=release,
              versions=state.releases[release].versions, gate=state.releases[release].gate)
        return release, state.releases[release].gate

    def _remove_version(self, model: str, version: int) -> None:
        versions.note_removed(self.repository, model, version)
        shutil.rmtree(self.repository / model / str(version), ignore_errors=True)
        for step in versions.steps_of(model):  # unloaded with the network's version
            shutil.rmtree(self.repository / step / str(version), ignore_errors=True)

    def _discard(self, state: ReleaseState, release: int, remove_version: bool) -> None:
        """Take a candidate out: routed nowhere first, then unloaded, then removed."""
        dropped = state.releases[release]
        state.candidate, state.canary_percent = None, 0.0
        del state.releases[release]
        save_state(self.repository, state)
        time.sleep(ROUTING_GRACE_S)
        self._retire_unkept(state, dropped_versions=dropped.versions, remove_versions=remove_version, older_too=False)

    def _retire_unkept(self, state: ReleaseState, dropped_versions: dict[str, int] | None = None,
                       remove_versions: bool = True, older_too: bool = True) -> None:
        """Unload and delete release ensembles and versions no kept release uses: the
        dropped release's, and (older_too, after a promote) every version older than the
        newest loaded one that no kept release uses."""
        kept = {release_ensemble(n, r) for r in state.kept() for n in ENSEMBLE_NAMES}
        stale = [d for d in release_ensemble_dirs(self.settings.ensembles_dir) if d.name not in kept]
        for directory in stale:
            self.admin.unload(directory.name)
        self._write_configs(state)
        for model in (*versions.VERSIONED_MODELS, "template_bank"):
            loaded = set(state.loaded_versions(model))
            if model == "template_bank":  # version 1 is the committed stage; later ones come and go
                unused = [v for v in _version_dirs(self.repository / model) if v not in loaded and v != 1]
            else:
                unused = [v for v in versions.versions(self.repository, model)
                          if older_too and v not in loaded and v < max(loaded)]
            dropped = (dropped_versions or {}).get(model, 1)
            if dropped_versions and dropped not in loaded and dropped not in unused and dropped != 1:
                unused.append(dropped)
            if unused:
                # the new version list: unused versions unload (a step's with its network's)
                self._load_network(model)
                if remove_versions or model == "template_bank":
                    for version in sorted(set(unused)):
                        self._remove_version(model, version)
        for directory in stale:
            shutil.rmtree(directory, ignore_errors=True)

    # ---- traffic -----------------------------------------------------------------------
    @_changes_release_state
    def canary(self, release: int, percent: float) -> None:
        state = self.ensure_initialised()
        if state.candidate != release:
            raise ReleaseStateError(f"release {release} is not the candidate (candidate: {state.candidate}); "
                                    "publish it first")
        if not state.releases[release].gate.get("passed"):
            raise ReleaseStateError(f"release {release} has not passed its gates")
        if not 0.0 <= percent <= 100.0:
            raise ReleaseStateError(f"--percent {percent} is outside 0..100")
        state.canary_percent = float(percent)
        save_state(self.repository, state)
        audit(self.repository, "canary", release=release, percent=percent, versions=state.releases[release].versions)

    @_changes_release_state
    def promote(self, release: int | None = None) -> int:
        state = self.ensure_initialised()
        release = release if release is not None else state.candidate
        if release is None or release not in (state.candidate, state.previous) or release == state.serving:
            raise ReleaseStateError(f"nothing to promote: the candidate is {state.candidate}, the previous release "
                                    f"{state.previous}, release {state.serving} serves")
        if not state.releases[release].gate.get("passed"):
            raise ReleaseStateError(f"release {release} has not passed its gates")
        old = state.serving
        state.serving, state.previous = release, old
        if state.candidate == release:
            state.candidate, state.canary_percent = None, 0.0
        save_state(self.repository, state)  # the gateway moves every call within its re-read interval
        self._reload_verifiers(self._write_configs(state))
        self._reload_plain_ensembles()
        time.sleep(ROUTING_GRACE_S)
        self._retire_unkept(state)
        save_state(self.repository, state)
        audit(self.repository, "promote", release=release, replaced=old, versions=state.releases[release].versions,
              gate=state.releases[release].gate)
        return release

    @_changes_release_state
    def rollback(self) -> int:
        """Stop a canary (its candidate is discarded), else serve the previous release again."""
        state = self.ensure_initialised()
        if state.candidate is not None:
            candidate = state.candidate
            imported = {m: versions.provenance(self.repository, m, v).get("origin") == "import"
                        for m, v in state.releases[candidate].versions.items()}
            self._discard(state, candidate, remove_version=any(imported.values()))
            audit(self.repository, "rollback", discarded=candidate, release=state.serving)
            return state.serving
        if state.previous is None:
            raise ReleaseStateError(f"release {state.serving} serves and there is no previous release to roll back to")
        bad = state.serving
        state.serving, state.previous = state.previous, bad
        save_state(self.repository, state)  # the gateway moves every call within its re-read interval
        self._reload_verifiers(self._write_configs(state))
        self._reload_plain_ensembles()
        # Like promote: once rollback returns, no gateway routes a new call to the bad release.
        time.sleep(ROUTING_GRACE_S)
        audit(self.repository, "rollback", release=state.serving, replaced=bad,
              versions=state.releases[state.serving].versions)
        return state.serving


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _version_dirs(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []
