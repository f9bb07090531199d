"""`facefuse eval quality`: the development set fused into the sample templates through
the running stack, scored, summarised per kind, and laid out as a contact sheet.

Posters come from the gateway (the real serving path: Triton's ensembles behind the
gateway's checks) as lossless PNG without the label, so the seam measure can find the
changed region exactly. Scores are measured here, in-process, with the project's own
detector and the eval-only face embedding (facefuse.eval.embedding); see
facefuse.eval.metrics for what each score means.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import random
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facefuse.eval import devset, labels, metrics, sheet
from facefuse.eval.embedding import FaceEmbedder, align_112, cosine
from facefuse.settings import get_settings
from facefuse.templates import TemplateStore

TEMPLATES = ("hopper-portrait", "painted-hopper", "astronaut-poster", "comic-astronaut")
# A person is not fused into their own portrait (identity could not tell the two apart).
TEMPLATE_PERSON = {"hopper-portrait": "grace_hopper", "painted-hopper": "grace_hopper",
                   "astronaut-poster": "astronaut", "comic-astronaut": "astronaut"}
# 80/50 is what a caller gets who sends no degrees (contract.DEFAULT_*_DEGREE): the labels'
# setting.
DEGREE_SETTINGS = ((100.0, 100.0), (80.0, 50.0))
# A face re-detected on the poster farther than this from the template face's centre is
# another face (or none): the fused face was lost.
SAME_FACE_IOD = 0.6
CROP_IOD = 3.4  # side of the face tiles, in inter-ocular distances
PARALLEL_CALLS = 4


def setting_name(fuse_degree: float, profile_degree: float) -> str:
    return f"{fuse_degree:g}/{profile_degree:g}"


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def face_crop(rgb: np.ndarray, keypoints: np.ndarray, side_iod: float = CROP_IOD) -> np.ndarray:
    centre = np.asarray(keypoints, np.float64).mean(axis=0)
    half = side_iod * metrics.inter_ocular(keypoints) / 2
    h, w = rgb.shape[:2]
    x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
    x1, y1 = int(min(w, centre[0] + half)), int(min(h, centre[1] + half))
    return rgb[y0:y1, x0:x1]


@dataclass(frozen=True)
class MeasuredFace:
    image: np.ndarray
    keypoints: np.ndarray
    embedding: np.ndarray


class Scorer:
    """Measures posters against the user's and the template's faces (models in-process)."""

    def __init__(self):
        self.faces = devset.FaceFinder()
        self.embedder = FaceEmbedder()

    def _embedding(self, rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        return self.embedder.embed([align_112(rgb, keypoints)])[0]

    def measure(self, rgb: np.ndarray, near: np.ndarray | None = None) -> MeasuredFace | None:
        """The main face (as the align stage picks it), or the face at `near` keypoints."""
        from facefuse.errors import FacefuseError

        if near is None:
            try:
                keypoints = self.faces.main_face(rgb).keypoints
            except FacefuseError:
                return None
        else:
            centre, iod = near.mean(axis=0), metrics.inter_ocular(near)
            found = [d for d in self.faces.detections(rgb)
                     if np.linalg.norm(d.keypoints.mean(axis=0) - centre) < SAME_FACE_IOD * iod]
            if not found:
                return None
            keypoints = min(found, key=lambda d: np.linalg.norm(d.keypoints.mean(axis=0) - centre)).keypoints
        return MeasuredFace(rgb, keypoints, self._embedding(rgb, keypoints))

    def score(self, user: MeasuredFace | None, template: MeasuredFace, poster: np.ndarray) -> dict:
        scores = {
            "sharpness": round(metrics.sharpness_ratio(poster, template.image, template.keypoints), 4),
            "seams": _round(metrics.seam_ratio(poster, template.image, template.keypoints)),
        }
        if user is not None:
            scores["sharpness_vs_user"] = round(
                metrics.sharpness_vs_source(poster, user.image, user.keypoints, template.keypoints), 4)
        fused = self.measure(poster, near=template.keypoints)
        scores["poster_face_found"] = fused is not None
        if fused is not None:
            scores["ghosting"] = round(metrics.keypoint_error(fused.keypoints, template.keypoints), 4)
            scores["identity_template"] = round(cosine(fused.embedding, template.embedding), 4)
            if user is not None:
                scores["identity_user"] = round(cosine(fused.embedding, user.embedding), 4)
        return scores


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# ---- fusing through the gateway ------------------------------------------------------
def _fuse(client, photo: bytes, template_id: str, fuse_degree: float, profile_degree: float) -> dict:
    from facefuse_client import FacefuseError

    try:
        poster = client.fuse(photo, template_id, fuse_degree=fuse_degree, profile_degree=profile_degree,
                             add_label=False, output_format="png")
    except FacefuseError as exc:
        return {"refused": exc.reason}
    # The response's quality and warnings, where the server sends them.
    return {"poster": poster.image, "quality": getattr(poster, "quality", None),
            "warnings": list(getattr(poster, "warnings", ()) or ())}


@dataclass
class EvalPlan:
    cases: list[devset.Case]
    templates: tuple[str, ...] = TEMPLATES
    degree_settings: tuple[tuple[float, float], ...] = DEGREE_SETTINGS


def _measured_templates(plan: EvalPlan, scorer: Scorer) -> dict:
    """The plan's templates' faces as the scorer sees them; ValueError for one it cannot see."""
    store = TemplateStore(get_settings().templates_path)
    templates = {}
    for template_id in plan.templates:
        face = scorer.measure(store.load(template_id).image)
        if face is None:
            raise ValueError(f"the detector finds no face in template {template_id!r}; it cannot be measured")
        templates[template_id] = face
    return templates


def run_quality_eval(plan: EvalPlan, out_dir: Path, target: str | None = None, api_key: str | None = None,
                     command: str = "", echo=print) -> dict:
    """Fuse, score, summarise; writes quality.json, summary.md and contact-sheet.png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = Scorer()
    templates = _measured_templates(plan, scorer)
    started = time.time()
    with serving_client(target, api_key, echo) as client:
        records, tiles = _run(plan, client, scorer, templates, echo)
    index = labels.load()
    for record in records:
        index.annotate(record, setting_name(record["fuse_degree"], record["profile_degree"]))
    result = {
        "command": command,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "seconds": round(time.time() - started, 1),
        "templates": list(plan.templates),
        "degree_settings": [setting_name(*s) for s in plan.degree_settings],
        "cases": len(plan.cases),
        "summary": summarise(records, plan),
        "posters": records,
    }
    (out_dir / "quality.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "summary.md").write_text(markdown_summary(result))
    contact_sheet(plan, templates, tiles).save(out_dir / "contact-sheet.png")
    return result


@contextlib.contextmanager
def serving_client(target: str | None, api_key: str | None, echo=print):
    """A client of the gateway at target, or of Triton and a gateway started here."""
    from facefuse_client import FacefuseClient

    from facefuse import stack

    if target:
        with FacefuseClient(target, api_key=api_key) as client:
            yield client
        return
    echo("starting Triton and the gateway ...")
    with stack.in_process(get_settings(), gateway_port=0) as (_triton, gateway, key), \
            FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=key) as client:
        yield client


def _jobs(plan: EvalPlan):
    for case in plan.cases:
        for template_id in plan.templates:
            if case.person and TEMPLATE_PERSON.get(template_id) == case.person:
                continue
            for degrees in plan.degree_settings:
                yield case, template_id, degrees


def _run(plan: EvalPlan, client, scorer: Scorer, templates: dict, echo) -> tuple[list[dict], dict]:
    users = {case.name: scorer.measure(_rgb(case.data())) for case in plan.cases}
    tiles: dict = {("user", case.name): _user_tile(case, users[case.name]) for case in plan.cases}
    records = []
    jobs = list(_jobs(plan))
    with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
        futures = {pool.submit(_fuse, client, case.data(), template_id, *degrees): (case, template_id, degrees)
                   for case, template_id, degrees in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            case, template_id, degrees = futures[future]
            answer = future.result()
            record = {"case": case.name, "kind": case.kind, "template": template_id,
                      "fuse_degree": degrees[0], "profile_degree": degrees[1], "refused": answer.get("refused")}
            key = (case.name, template_id, setting_name(*degrees))
            if record["refused"] is None:
                record["sha256"] = labels.poster_digest(answer["poster"])
                poster = _rgb(answer["poster"])
                record.update(scorer.score(users[case.name], templates[template_id], poster))
                record.update(quality=answer["quality"], warnings=answer["warnings"])
                tiles[key] = sheet.tile(face_crop(poster, templates[template_id].keypoints), _poster_label(record))
            else:
                tiles[key] = sheet.tile(None, setting_name(*degrees), note=record["refused"])
            records.append(record)
            if done % 50 == 0 or done == len(jobs):
                echo(f"  {done}/{len(jobs)} posters")
    records.sort(key=lambda r: (devset.KINDS.index(r["kind"]), r["case"], r["template"], -r["fuse_degree"]))
    return records, tiles


def _user_tile(case: devset.Case, user: MeasuredFace | None):
    image = _rgb(case.data())
    return sheet.tile(face_crop(image, user.keypoints, 4.0) if user is not None else image, case.name.split("-", 1)[1])


def _poster_label(record: dict) -> str:
    if not record.get("poster_face_found"):
        return f"face lost s{record['sharpness']:.2f}"
    user = record.get("identity_user")
    return (f"u{user:.2f} " if user is not None else "") + f"t{record['identity_template']:.2f} s{record['sharpness']:.2f}"


# ---- summaries ------------------------------------------------------------------------
def summarise(records: list[dict], plan: EvalPlan) -> dict:
    """Per degree setting, per kind (and all kinds): refusals and the scores' spread."""
    out = {}
    for degrees in plan.degree_settings:
        name = setting_name(*degrees)
        of_setting = [r for r in records if setting_name(r["fuse_degree"], r["profile_degree"]) == name]
        out[name] = {kind: _summary_of([r for r in of_setting if r["kind"] == kind])
                     for kind in devset.KINDS if any(r["kind"] == kind for r in of_setting)}
        out[name]["all"] = _summary_of(of_setting)
        out[name]["by_template"] = {t: _summary_of([r for r in of_setting if r["template"] == t]) for t in plan.templates}
    return out


def _summary_of(records: list[dict]) -> dict:
    refused = [r for r in records if r["refused"]]
    fused = [r for r in records if not r["refused"]]
    with_identity = [r for r in fused if r.get("identity_user") is not None]
    reasons = _counts(r["refused"] for r in refused)
    return {
        "posters": len(records),
        "refused": len(refused),
        "refused_by_reason": reasons,
        "poster_face_lost": sum(1 for r in fused if not r.get("poster_face_found")),
        # A lost face counts as not closer to the user.
        "identity_user_closer_share": metrics.share(
            [r.get("identity_user") is not None and r["identity_user"] > r["identity_template"] for r in fused
             if r.get("identity_user") is not None or not r.get("poster_face_found")]),
        "identity_user": metrics.summary([r.get("identity_user") for r in with_identity]),
        "identity_template": metrics.summary([r.get("identity_template") for r in fused]),
        "sharpness": metrics.summary([r.get("sharpness") for r in fused]),
        "sharpness_vs_user": metrics.summary([r.get("sharpness_vs_user") for r in fused]),
        "ghosting": metrics.summary([r.get("ghosting") for r in fused]),
        "seams": metrics.summary([r.get("seams") for r in fused]),
        # What the server says about its own posters, where it says it.
        "quality": metrics.summary([r.get("quality") for r in fused]),
        "warnings": _counts(w for r in fused for w in r.get("warnings") or ()),
        # By eye (docs/quality-labels): only labels of these exact pixels count.
        "labels": labels.rates(records),
    }


def _counts(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_summary(result: dict) -> str:
    lines = [f"Command: `{result['command']}`  ", f"Machine: {result['machine']}; {result['cases']} cases into "
             f"{', '.join(result['templates'])}; {result['seconds']:.0f} s.", ""]
    for setting, kinds in result["summary"].items():
        lines += [f"### fuse / profile {setting}", "",
                  "| kind | posters | refused | user closer | cos user (median) | cos template (median) "
                  "| sharpness median / min | vs user median / min | ghosting median / max | seams median / max | face lost |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        rows = [(k, v) for k, v in kinds.items() if k != "by_template"]
        rows += [(f"into {t}", v) for t, v in kinds.get("by_template", {}).items()]
        for kind, s in rows:
            reasons = ", ".join(f"{k} {v}" for k, v in s["refused_by_reason"].items())
            lines.append(
                f"| {kind} | {s['posters']} | {s['refused']}{f' ({reasons})' if reasons else ''} "
                f"| {_fmt(None if s['identity_user_closer_share'] is None else 100 * s['identity_user_closer_share'], 0)}% "
                f"| {_fmt(s['identity_user']['median'])} | {_fmt(s['identity_template']['median'])} "
                f"| {_fmt(s['sharpness']['median'])} / {_fmt(s['sharpness']['min'])} "
                f"| {_fmt(s['sharpness_vs_user']['median'])} / {_fmt(s['sharpness_vs_user']['min'])} "
                f"| {_fmt(s['ghosting']['median'])} / {_fmt(s['ghosting']['max'])} "
                f"| {_fmt(s['seams']['median'])} / {_fmt(s['seams']['max'])} | {s['poster_face_lost']} |")
        lines += ["", f"By eye, fuse / profile {setting} (labels of these exact posters in docs/quality-labels; "
                  "a poster whose pixels changed since it was labelled has no label):", "",
                  "| kind | posters | refused | labelled | publishable of labelled | no label (stale) | defects |",
                  "|---|---|---|---|---|---|---|"]
        for kind, s in rows:
            lb = s["labels"]
            rate = "-" if lb["publishable_rate"] is None else f"{100 * lb['publishable_rate']:.0f}%"
            refused = "-" if lb["refused_rate"] is None else f"{100 * lb['refused_rate']:.0f}%"
            defects = ", ".join(f"{k} {v}" for k, v in lb["defects"].items())
            lines.append(f"| {kind} | {lb['posters']} | {refused} | {lb['labelled']} | {lb['publishable']} ({rate}) "
                         f"| {lb['unlabelled']} ({lb['stale']}) | {defects} |")
        lines.append("")
    return "\n".join(lines)


def contact_sheet(plan: EvalPlan, templates: dict, tiles: dict):
    """Rows of user | poster per template and setting, grouped by kind; a header row of
    the template faces under each kind's heading."""
    settings = [setting_name(*s) for s in plan.degree_settings]
    header = [sheet.tile(None, "user photo")] + [
        sheet.tile(face_crop(templates[t].image, templates[t].keypoints), f"{t[:11]} {s}")
        for t in plan.templates for s in settings
    ]
    width = len(header) * sheet.TILE_PX
    rows = []
    for kind in devset.KINDS:
        of_kind = [case for case in plan.cases if case.kind == kind]
        if not of_kind:
            continue
        rows += [sheet.heading(f"{kind} ({len(of_kind)} cases): user | poster per template at fuse/profile "
                               f"{' and '.join(settings)}; labels: u/t = cosine to user/template, s = sharpness", width),
                 sheet.hstack(header)]
        for case in of_kind:
            row = [tiles[("user", case.name)]]
            for template_id in plan.templates:
                for s in settings:
                    row.append(tiles.get((case.name, template_id, s)) or sheet.tile(None, s, note="same person"))
            rows.append(sheet.hstack(row))
    return sheet.stack(rows)


# ---- blind rating sheets ----------------------------------------------------------------
SHEET_ROWS = 6


def write_rating_sheets(plan: EvalPlan, out_dir: Path, target: str | None = None, api_key: str | None = None,
                        rows_per_sheet: int = SHEET_ROWS, seed: int = 23, command: str = "", echo=print) -> dict:
    """Posters through the gateway, laid out blind for a rater: rows in shuffled order,
    each the user's face crop (for reference) and the poster's face crop, both at 100%,
    named only by a row id. Writes sheet-NN.png, ratings.csv (to fill in) and key.json
    (which row is which poster, with its digest: keep it from the rater)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = Scorer()
    templates = _measured_templates(plan, scorer)
    users = {case.name: scorer.measure(_rgb(case.data())) for case in plan.cases}
    jobs = list(_jobs(plan))
    with serving_client(target, api_key, echo) as client, ThreadPoolExecutor(PARALLEL_CALLS) as pool:
        answers = list(pool.map(lambda job: _fuse(client, job[0].data(), job[1], *job[2]), jobs))
    rows = []
    for (case, template_id, degrees), answer in zip(jobs, answers):
        if answer.get("refused"):
            continue
        user = users[case.name]
        user_image = _rgb(case.data())
        rows.append({
            "case": case.name, "kind": case.kind, "template": template_id, "degrees": setting_name(*degrees),
            "sha256": labels.poster_digest(answer["poster"]),
            "user_crop": face_crop(user_image, user.keypoints) if user is not None else user_image,
            "poster_crop": face_crop(_rgb(answer["poster"]), templates[template_id].keypoints),
        })
    random.Random(seed).shuffle(rows)
    key = {"command": command, "rubric": labels.RUBRIC, "refused": len(jobs) - len(rows), "rows": {}}
    for old in out_dir.glob("sheet-*.png"):
        old.unlink()
    for start in range(0, len(rows), rows_per_sheet):
        images = []
        for number, row in enumerate(rows[start:start + rows_per_sheet], start + 1):
            row_id = f"r{number:03d}"
            key["rows"][row_id] = {k: row[k] for k in ("case", "kind", "template", "degrees", "sha256")}
            images.append(_rating_row(row_id, row["user_crop"], row["poster_crop"]))
        sheet.stack(images).save(out_dir / f"sheet-{start // rows_per_sheet + 1:02d}.png")
    (out_dir / "key.json").write_text(json.dumps(key, indent=1) + "\n")
    with (out_dir / "ratings.csv").open("w") as handle:
        handle.write(",".join(labels.RATINGS_COLUMNS) + "\n")
        handle.writelines(f"{row_id},,,\n" for row_id in key["rows"])
    echo(f"{len(rows)} posters in {-(-len(rows) // rows_per_sheet)} sheets ({key['refused']} refused, not shown)")
    return key


def _rating_row(row_id: str, user_crop: np.ndarray, poster_crop: np.ndarray):
    """A heading with the row id, then user | poster at their own pixel size."""
    from PIL import Image as PILImage

    gap = 12
    user, poster = PILImage.fromarray(np.ascontiguousarray(user_crop)), PILImage.fromarray(np.ascontiguousarray(poster_crop))
    body = PILImage.new("RGB", (user.width + gap + poster.width, max(user.height, poster.height)), sheet.BACKGROUND)
    body.paste(user, (0, 0))
    body.paste(poster, (user.width + gap, 0))
    return sheet.stack([sheet.heading(f"{row_id}: left the photo (reference), right the poster; "
                                      "rate the right one by docs/quality.md#publishable", max(body.width, 520)), body])
