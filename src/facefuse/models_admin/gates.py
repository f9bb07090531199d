"""The checks a candidate passes before any caller sees it.

1. Numerics (in this process, before Triton loads it): polygraphy's Comparator runs the
   candidate and the serving version with ONNX Runtime on the build's real-photo
   inputs. The candidate must keep the tensor contract (output names, dtypes, shapes)
   and give finite outputs; its differences from the serving version are recorded.
2. Golden set (through the running Triton, candidate release vs serving release, the
   same ensembles callers get): real photos into real templates.
   - face found: the candidate's user side finds a face wherever the serving one does,
     with the same box (IoU) and mesh (mean shift in crop pixels);
   - the poster: it changed the template as much as the serving version's does
     (`change_ratio`, so a fuse returning the template unchanged fails); the scores of
     `facefuse eval quality` (facefuse.eval.quality.Scorer: identity with the user by
     MobileFaceNet, sharpness, ghosting, seams, the face found again) no worse than the
     serving poster's by more than set margins; optionally a mean pixel difference
     from the serving poster in the fused region;
   - latency: the candidate's median call is no slower than the serving one's by more
     than a margin.
   Margins are settings of the gate (`GateMargins`); the report holds every figure.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tritonclient.utils import InferenceServerException

from facefuse import contract, samples
from facefuse.errors import Reason, reason_from_message
from facefuse.models_admin.errors import GateFailed
from facefuse.models_admin.releases import release_ensemble
from facefuse.templates import TemplateStore
from facefuse.triton_client import ANALYZE_OUTPUTS, POSTER_OUTPUT, FuseOptions, analyze_inputs, fusion_inputs, poster_bytes

# Single-face sample templates the golden set fuses into, where registered.
GOLDEN_TEMPLATES = ("hopper-portrait", "astronaut-poster", "painted-hopper", "comic-astronaut")
GOLDEN_OPTIONS = FuseOptions(fuse_degree=80, profile_degree=50, add_label=False, output_format="png")
# A pixel of the serving poster belongs to the fused region where it differs from the
# template by more than this (sum over RGB, 0..765).
FUSED_REGION_MIN_CHANGE = 12


@dataclass(frozen=True)
class GateMargins:
    max_mesh_shift_px: float = 1.0  # mean |mesh point shift| against the serving version
    min_box_iou: float = 0.9
    min_change_ratio: float = 0.6  # candidate's change of the template / serving version's
    max_pixel_diff: float | None = None  # mean |candidate - serving| per channel in the fused region
    # `facefuse eval quality` scores, candidate against serving, per golden case:
    max_identity_drop: float = 0.05  # cosine similarity of the poster's face to the user's
    max_sharpness_drop: float = 0.2  # relative, of the inner face's detail energy
    max_ghosting_increase: float = 0.05  # keypoint error, inter-ocular units
    max_seams_increase: float = 0.5  # relative, of the paste border's edge energy
    max_latency_increase: float = 0.5  # candidate median <= serving median * (1 + this)
    rounds: int = 2  # golden calls per case and release (the first also warms the candidate)


def golden_photos() -> dict[str, bytes]:
    return {"astronaut": samples.astronaut(), "grace_hopper": samples.grace_hopper()}


# ---- 1. numerics ------------------------------------------------------------------
def _feeds(model: str, repository: Path, serving: dict[str, int], profile: str) -> list[tuple[str, dict]]:
    import onnxruntime as ort
    from facefuse_build import checks

    px = contract.DETECTOR_INPUT_PX[profile]
    if model == "face_detector":
        return checks.detector_inputs(px)
    detector = repository / "face_detector" / str(serving["face_detector"]) / "model.onnx"
    faces = checks.aligned_faces(detector, px)
    if model == "face_landmarks":
        return checks.landmarks_inputs(faces)
    mesh = ort.InferenceSession(str(repository / "face_landmarks" / str(serving["face_landmarks"]) / "model.onnx"))
    return checks.fuse_inputs([(n, c, mesh.run(None, {"faces": c[None]})[0][0]) for n, c in faces])


def numerics_check(model: str, candidate: Path, repository: Path, serving: dict[str, int], profile: str,
                   report_path: Path | None = None) -> dict:
    """Contract and finiteness on real inputs, and the difference from the serving version."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    serving_path = repository / model / str(serving[model]) / "model.onnx"
    feeds = _feeds(model, repository, serving, profile)
    runners = [OnnxrtRunner(SessionFromOnnx(str(candidate)), name="candidate"),
               OnnxrtRunner(SessionFromOnnx(str(serving_path)), name="serving")]
    report: dict = {"check": "numerics", "model": model, "tool": "polygraphy Comparator (ONNX Runtime)",
                    "samples": [name for name, _ in feeds], "problems": []}
    try:
        results = Comparator.run(runners, data_loader=[feed for _, feed in feeds])
    except Exception as exc:  # noqa: BLE001 - the candidate does not even run on the contract's inputs
        report["problems"].append(f"the candidate does not run on the serving inputs: {type(exc).__name__}: {exc}")
        results = None
    if results is not None:
        report["finite"] = bool(Comparator.validate(results, check_inf=True, check_nan=True))
        if not report["finite"]:
            report["problems"].append("the candidate's outputs hold NaN or Inf")
        differences: dict[str, float] = {}
        for got, want in zip(results["candidate"], results["serving"]):
            for name in want:
                if name not in got:
                    report["problems"].append(f"output {name!r} is missing")
                    continue
                a, b = np.asarray(got[name]), np.asarray(want[name])
                if a.dtype != b.dtype or a.shape != b.shape:
                    report["problems"].append(f"output {name!r} is {a.dtype}{list(a.shape)}, the contract is {b.dtype}{list(b.shape)}")
                    continue
                differences[name] = max(differences.get(name, 0.0), float(np.abs(a.astype(np.float64) - b).max()))
        report["max_abs_difference_from_serving"] = differences
    report["passed"] = not report["problems"]
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if not report["passed"]:
        raise GateFailed(f"{model} numerics check failed: {'; '.join(dict.fromkeys(report['problems']))}", report)
    return report


# ---- 2. golden set through Triton --------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _analyze(admin, release: int, photo: bytes):
    """(boxes, meshes) of the release's user side, or None where it finds no face."""
    try:
        result = admin.infer(release_ensemble("face_analyze", release), analyze_inputs(photo), ANALYZE_OUTPUTS)
    except InferenceServerException as exc:
        if reason_from_message(exc.message()) in (Reason.NO_FACE_DETECTED, Reason.FACE_TOO_SMALL,
                                                  Reason.FACE_EXCEEDS_BORDER):
            return None
        raise
    return result.as_numpy("user_boxes")[0], result.as_numpy("user_meshes")[0]


def _fuse(admin, release: int, photo: bytes, template_id: str) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = admin.infer(release_ensemble("face_fusion", release), fusion_inputs(photo, template_id, 0, GOLDEN_OPTIONS),
                         POSTER_OUTPUT)
    elapsed = time.perf_counter() - started
    return samples.rgb(poster_bytes(result)), elapsed


def _score_problems(serving: dict, candidate: dict, margins: GateMargins) -> list[str]:
    """Where the candidate's eval scores are worse than the serving poster's beyond a margin."""
    problems = []
    if serving.get("poster_face_found") and not candidate.get("poster_face_found"):
        return ["the face is no longer found on the poster"]
    s, c = serving.get("identity_user"), candidate.get("identity_user")
    if s is not None and c is not None and c < s - margins.max_identity_drop:
        problems.append(f"identity with the user {c:.3f} against the serving {s:.3f} (at most -{margins.max_identity_drop} allowed)")
    s, c = serving.get("sharpness"), candidate.get("sharpness")
    if s and c is not None and c < s * (1 - margins.max_sharpness_drop):
        problems.append(f"sharpness {c:.3f} against the serving {s:.3f} (at most -{margins.max_sharpness_drop:.0%})")
    s, c = serving.get("ghosting"), candidate.get("ghosting")
    if s is not None and c is not None and c > s + margins.max_ghosting_increase:
        problems.append(f"ghosting {c:.3f} against the serving {s:.3f} (at most +{margins.max_ghosting_increase})")
    s, c = serving.get("seams"), candidate.get("seams")
    if s and c is not None and c > s * (1 + margins.max_seams_increase):
        problems.append(f"seams {c:.3f} against the serving {s:.3f} (at most +{margins.max_seams_increase:.0%})")
    return problems


def golden_gate(admin, serving: int, candidate: int, store: TemplateStore, margins: GateMargins = GateMargins()) -> dict:
    """Run the golden set through both releases; raise GateFailed naming each failed check."""
    templates = [t for t in GOLDEN_TEMPLATES if t in set(store.ids())]
    from facefuse.eval.quality import TEMPLATE_PERSON, Scorer

    scorer = Scorer()  # the eval's measuring models, in this process (FileNotFoundError: not built)
    template_faces = {t: scorer.measure(store.load(t).image) for t in templates}
    report: dict = {"check": "golden", "serving_release": serving, "candidate_release": candidate,
                    "margins": asdict(margins), "photos": {}, "posters": {}, "failures": []}
    fail = report["failures"].append
    latency = {"serving": [], "candidate": []}
    for name, photo in golden_photos().items():
        want, got = _analyze(admin, serving, photo), _analyze(admin, candidate, photo)
        entry: dict = {"serving_face": want is not None, "candidate_face": got is not None}
        user_face = scorer.measure(samples.rgb(photo))
        report["photos"][name] = entry
        if want is None:
            continue
        if got is None:
            fail(f"face found: the candidate finds no face in {name} (the serving version does)")
            continue
        entry["box_iou"] = round(_iou(want[0][0], got[0][0]), 4)
        entry["mesh_shift_px"] = round(float(np.linalg.norm(want[1][0][:, :2] - got[1][0][:, :2], axis=-1).mean()), 3)
        if entry["box_iou"] < margins.min_box_iou:
            fail(f"face box: IoU {entry['box_iou']:.3f} with the serving box in {name}, at least {margins.min_box_iou} needed")
        if entry["mesh_shift_px"] > margins.max_mesh_shift_px:
            fail(f"face mesh: points {entry['mesh_shift_px']:.2f} px from the serving mesh on average in {name}, "
                 f"at most {margins.max_mesh_shift_px} allowed")
        for template_id in templates:
            template = store.load(template_id).image.astype(np.int16)
            posters, refused = {}, {}
            key = f"{name}->{template_id}"
            for round_ in range(max(1, margins.rounds)):
                for side, release in (("serving", serving), ("candidate", candidate)):
                    try:
                        posters[side], elapsed = _fuse(admin, release, photo, template_id)
                    except InferenceServerException as exc:
                        # postprocess's check refused the poster (FUSION_QUALITY_LOW)
                        if reason_from_message(exc.message()) is not Reason.FUSION_QUALITY_LOW:
                            raise
                        refused[side] = exc.message()
                        continue
                    if round_ > 0 or margins.rounds <= 1:  # the first round warms both
                        latency[side].append(elapsed)
            if refused:
                report["posters"][key] = {"refused": refused}
                if "candidate" in refused and "serving" not in refused:
                    fail(f"verification: {key} is refused by the poster check with the candidate "
                         f"({refused['candidate']}), not with the serving version")
                continue
            serving_poster, candidate_poster = (posters[s].astype(np.int16) for s in ("serving", "candidate"))
            region = np.abs(serving_poster - template).sum(-1) > FUSED_REGION_MIN_CHANGE
            figures: dict = {"region_px": int(region.sum())}
            report["posters"][key] = figures
            if not region.any():
                continue
            serving_change = float(np.abs(serving_poster - template)[region].mean())
            candidate_change = float(np.abs(candidate_poster - template)[region].mean())
            figures["change_ratio"] = round(candidate_change / max(serving_change, 1e-6), 3)
            figures["pixel_diff"] = round(float(np.abs(candidate_poster - serving_poster)[region].mean()), 2)
            # A photo fused into its own person's portrait changes the template little, so
            # neither identity nor the change ratio can tell a working fuse from a broken one.
            same_person = TEMPLATE_PERSON.get(template_id) == name
            if template_faces[template_id] is not None:
                user = None if same_person else user_face
                figures["serving"] = scorer.score(user, template_faces[template_id], posters["serving"])
                figures["candidate"] = scorer.score(user, template_faces[template_id], posters["candidate"])
                for problem in _score_problems(figures["serving"], figures["candidate"], margins):
                    fail(f"quality: {key} {problem}")
            if not same_person and figures["change_ratio"] < margins.min_change_ratio:
                fail(f"fusion: {key} changes the template {figures['change_ratio']:.2f}x as much as the serving "
                     f"version (at least {margins.min_change_ratio} needed)")
            if margins.max_pixel_diff is not None and figures["pixel_diff"] > margins.max_pixel_diff:
                fail(f"poster: {key} differs from the serving poster by {figures['pixel_diff']:.1f} levels on average "
                     f"in the fused region (at most {margins.max_pixel_diff})")
    if latency["serving"] and latency["candidate"]:
        serving_ms = statistics.median(latency["serving"]) * 1000
        candidate_ms = statistics.median(latency["candidate"]) * 1000
        report["latency_ms"] = {"serving_median": round(serving_ms, 1), "candidate_median": round(candidate_ms, 1)}
        if candidate_ms > serving_ms * (1 + margins.max_latency_increase):
            fail(f"latency: median {candidate_ms:.0f} ms against the serving {serving_ms:.0f} ms "
                 f"(at most +{margins.max_latency_increase:.0%})")
    report["passed"] = not report["failures"]
    if not report["passed"]:
        raise GateFailed("golden-set gate failed: " + "; ".join(report["failures"]), report)
    return report
