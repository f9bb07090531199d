"""Configs that follow the release state: loaded versions and pinned ensembles.

Given the generated configs (facefuse_build.configs) and the release state:
- each versioned network gets `version_policy: specific` with the versions of the kept
  releases (serving, rollback target, candidate), so Triton loads exactly those, on a
  reload as after a restart; so does a cpu-profile step built on it (versions.STEP_NETWORKS);
- the plain ensembles (`face_fusion`, ...) pin the serving release's versions instead
  of following "latest" (a candidate is the latest version, and must not leak);
- every kept release gets its own ensembles, `face_fusion_r<N>` and so on;
- the models that verify posters name the serving release's face_landmarks version
  (versions.VERIFYING_MODELS).
"""

from __future__ import annotations

import copy
from pathlib import Path

from facefuse.models_admin.releases import ENSEMBLE_NAMES, ReleaseState, release_ensemble
from facefuse.models_admin.versions import STEP_NETWORKS, VERIFICATION_LANDMARKS, VERIFYING_MODELS, VERSIONED_MODELS


def _pinned(ensemble: dict, versions: dict[str, int], name: str) -> dict:
    versions = {**versions, **{step: versions[net] for step, net in STEP_NETWORKS.items() if net in versions}}
    config = copy.deepcopy(ensemble)
    config["name"] = name
    for step in config["ensemble_scheduling"]["step"]:
        if step["model_name"] in versions:
            step["model_version"] = int(versions[step["model_name"]])
    return config


def apply_state(models: dict[str, dict], ensembles: dict[str, dict], state: ReleaseState | None
                ) -> tuple[dict[str, dict], dict[str, dict]]:
    """(model configs, ensemble configs incl. release ensembles); unchanged without a state."""
    if state is None:
        return models, ensembles
    models = copy.deepcopy(models)
    for name in (*VERSIONED_MODELS, "template_bank"):
        models[name]["version_policy"] = {"specific": {"versions": state.loaded_versions(name)}}
    for step, network in STEP_NETWORKS.items():
        if step in models:
            models[step]["version_policy"] = {"specific": {"versions": state.loaded_versions(network)}}
    landmarks = state.serving_versions().get("face_landmarks")
    for name in VERIFYING_MODELS:
        if name in models and landmarks is not None:
            models[name].setdefault("parameters", {})[VERIFICATION_LANDMARKS] = {"string_value": str(landmarks)}
    pinned = {name: _pinned(config, state.serving_versions(), name) for name, config in ensembles.items()}
    for release in state.kept():
        for name in ENSEMBLE_NAMES:
            pinned[release_ensemble(name, release)] = _pinned(ensembles[name], state.releases[release].versions,
                                                              release_ensemble(name, release))
    return models, pinned


def release_ensemble_dirs(ensembles_dir: Path) -> list[Path]:
    """Release ensembles on disk (`<name>_r<N>/`)."""
    if not Path(ensembles_dir).is_dir():
        return []
    return sorted(p for p in Path(ensembles_dir).iterdir()
                  if p.is_dir() and any(p.name.startswith(f"{n}_r") and p.name[len(n) + 2:].isdigit()
                                        for n in ENSEMBLE_NAMES))
