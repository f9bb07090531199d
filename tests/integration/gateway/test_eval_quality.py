"""`facefuse eval quality` through the real gateway and Triton, on a small subset of the
development set (the whole set is a measurement run, not a test)."""

from __future__ import annotations

import json

import pytest
from gateway_helpers import target
from PIL import Image

from facefuse.eval import devset
from facefuse.eval.quality import EvalPlan, run_quality_eval

CASES = ("frontal-obama4_crop", "turned-franck-v1086", "frontal-einstein")


@pytest.fixture(scope="module")
def result(gateway, credentials, template_store, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("eval-quality")
    plan = EvalPlan(devset.load(names=CASES), ("astronaut-poster",), ((100.0, 100.0), (80.0, 50.0)))
    return out_dir, run_quality_eval(plan, out_dir, target(gateway), credentials.full_key, command="test")


def test_eval_writes_scores_summary_and_a_contact_sheet_with_a_row_per_case(result):
    out_dir, _ = result
    written = json.loads((out_dir / "quality.json").read_text())
    assert len(written["posters"]) == len(CASES) * 2
    assert "| frontal |" in (out_dir / "summary.md").read_text()
    with Image.open(out_dir / "contact-sheet.png") as sheet:
        # Per kind: a heading, a row of template faces, one row per case.
        assert sheet.height > len(CASES) * 128
        assert sheet.width == 3 * 128


def test_fused_posters_carry_every_score(result):
    _, written = result
    by_case = {}
    for poster in written["posters"]:
        by_case.setdefault(poster["case"], []).append(poster)
    # Einstein's lecture photo: his face is small in a large photo, missed by the
    # detector's first pass and found by its second, on tiles.
    for poster in by_case["frontal-obama4_crop"] + by_case["turned-franck-v1086"] + by_case["frontal-einstein"]:
        assert poster["refused"] is None
        assert poster["poster_face_found"]
        for score in ("identity_user", "identity_template", "sharpness", "sharpness_vs_user", "ghosting", "seams"):
            assert isinstance(poster[score], float), score
    summary = written["summary"]["100/100"]["frontal"]
    assert summary["refused"] == 0 and summary["posters"] == 2


def test_at_fuse_degree_100_a_frontal_face_is_closer_to_the_user_than_to_the_template(result):
    _, written = result
    poster = next(p for p in written["posters"] if p["case"] == "frontal-obama4_crop" and p["fuse_degree"] == 100.0)
    assert poster["identity_user"] > poster["identity_template"]
