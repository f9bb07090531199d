"""Templates analysed by the detector and landmarks versions of each release.

A template's artifact (`template.npz`) holds faces, meshes and affines made by one
`face_detector` + `face_landmarks` pair; fusing them with user meshes of another pair
would mix versions in one poster. So a release that changes either model gets a
`template_bank` version of its own (`template_bank/<K>/analysis.json` names its
analysis key, e.g. `d1-l2`) and every template is re-analysed by the candidate's models
into `analysis-<key>.npz` beside its artifact before the candidate takes a call. The
old analyses stay for rollback. `template_bank` version 1 serves `template.npz` itself,
analysed by the base pair (`ReleaseState.base_analysis`).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np

from facefuse.models_admin.errors import GateFailed
from facefuse.models_admin.releases import ReleaseState, load_state
from facefuse.settings import Settings
from facefuse.templates import TemplateArtifact, TemplateStore

ANALYSIS_MODELS = ("face_detector", "face_landmarks")
PINNED_ANALYSIS = "analysis.json"
# A re-analysed face is the stored one when their boxes overlap at least this much.
MIN_FACE_IOU = 0.5


def analysis_key(versions: dict[str, int]) -> str:
    return f"d{versions['face_detector']}-l{versions['face_landmarks']}"


def template_bank_analysis(repository: Path, version: int) -> str | None:
    path = Path(repository) / "template_bank" / str(version) / PINNED_ANALYSIS
    return json.loads(path.read_text())["analysis"] if path.is_file() else None


def new_template_bank_version(repository: Path, key: str) -> int:
    """template_bank/<K>/: the stage's adapter and the analysis key it serves."""
    from facefuse.models_admin.versions import next_version

    directory = Path(repository) / "template_bank"
    version = next_version(repository, "template_bank")
    staging = directory / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copyfile(directory / "1" / "model.py", staging / "model.py")
    (staging / PINNED_ANALYSIS).write_text(json.dumps({"analysis": key}) + "\n")
    staging.rename(directory / str(version))
    return version


def _pipeline(settings: Settings, versions: dict[str, int]):
    from facefuse.local_pipeline import LocalPipeline

    repository = settings.model_repository_dir
    return LocalPipeline(settings, model_paths={m: repository / m / str(versions[m]) / "model.onnx" for m in ANALYSIS_MODELS})


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def reanalyse(pipeline, store: TemplateStore, template_id: str, version: int, key: str) -> dict:
    """The stored faces (matched by box) as the pipeline's models see them; written as `key`."""
    stored = store.load(template_id, version)
    fresh = pipeline.analyze_template(template_id, _png(stored.image), source=stored.source)
    picks, ious = [], []
    for box in stored.boxes:
        overlaps = [_iou(box, b) for b in fresh.boxes]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best < 0 or overlaps[best] < MIN_FACE_IOU:
            raise GateFailed(f"template {template_id!r}: face at {np.round(box[:4]).tolist()} is not found by "
                             f"models {key} (best box overlap {max(overlaps, default=0):.2f})",
                             {"check": "templates", "template": template_id, "analysis": key, "passed": False})
        picks.append(best)
        ious.append(round(overlaps[best], 3))
    store.add_analysis(template_id, version, key, TemplateArtifact(
        template_id, version, stored.image[:0], fresh.faces[picks], fresh.meshes[picks], fresh.affines[picks],
        fresh.boxes[picks]))
    shift = np.linalg.norm(fresh.meshes[picks][..., :2] - stored.meshes[..., :2], axis=-1).mean()
    return {"faces": len(picks), "box_iou": min(ious), "mesh_shift_px": round(float(shift), 3)}


def reanalyse_all(settings: Settings, versions: dict[str, int], key: str) -> dict:
    """Every registered template's serving version, analysed by `versions`' detector and landmarks."""
    store = TemplateStore(settings.templates_path)
    pipeline = _pipeline(settings, versions)
    return {t: reanalyse(pipeline, store, t, store.latest_version(t), key) for t in store.ids()}


def base_model_paths(settings: Settings) -> dict[str, Path] | None:
    """Models a new template's own artifact is analysed with: the pair template_bank 1 serves."""
    state = load_state(settings.model_repository_dir)
    if state is None:
        return None
    repository = settings.model_repository_dir
    return {m: repository / m / str(state.base_analysis[m]) / "model.onnx" for m in ANALYSIS_MODELS
            if (repository / m / str(state.base_analysis[m]) / "model.onnx").is_file()}


def analyse_for_kept_releases(settings: Settings, template_id: str, version: int) -> list[str]:
    """A newly added template version, analysed for every kept release with its own analysis."""
    state: ReleaseState | None = load_state(settings.model_repository_dir)
    if state is None:
        return []
    store = TemplateStore(settings.templates_path)
    done = []
    for release in state.kept():
        versions = state.releases[release].versions
        key = template_bank_analysis(settings.model_repository_dir, versions.get("template_bank", 1))
        if key and key not in done:
            reanalyse(_pipeline(settings, versions), store, template_id, version, key)
            done.append(key)
    return done
