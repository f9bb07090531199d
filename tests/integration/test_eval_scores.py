"""The eval's scores move the right way on constructed posters (real models, no server)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from facefuse.eval import devset
from facefuse.eval.quality import Scorer
from facefuse.local_pipeline import LocalPipeline

TEMPLATE = "astronaut-poster"
USER_CASE = "frontal-obama4_crop"


@pytest.fixture(scope="module")
def scorer(built_repository):
    return Scorer()


@pytest.fixture(scope="module")
def faces(scorer, template_store, settings):
    """(user, template, a real poster of the user in the template) measured."""
    (case,) = devset.load(names=(USER_CASE,))
    artifact = template_store.load(TEMPLATE)
    local = LocalPipeline(settings)
    poster = local.fuse(local.analyze_user(case.data()), artifact, fuse_degree=100, profile_degree=100,
                        add_label=False, output_format="png")
    user = scorer.measure(np.asarray(Image.open(io.BytesIO(case.data())).convert("RGB")))
    template = scorer.measure(artifact.image)
    return user, template, np.asarray(Image.open(io.BytesIO(poster)).convert("RGB"))


def test_a_face_has_identity_about_1_with_itself(scorer, faces):
    user, _, _ = faces
    again = scorer.measure(user.image)
    assert scorer.score(user, user, user.image)["identity_user"] == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(again.embedding, user.embedding, atol=1e-4)


def test_a_poster_that_is_the_template_itself_scores_template_identity_not_user_identity(scorer, faces):
    user, template, _ = faces
    scores = scorer.score(user, template, template.image)
    assert scores["identity_template"] > 0.99
    assert scores["identity_user"] < 0.5
    assert scores["sharpness"] == pytest.approx(1.0)
    assert scores["ghosting"] < 0.02
    assert scores["seams"] is None  # nothing was pasted


def test_a_real_poster_is_closer_to_the_user_and_a_blurred_copy_scores_lower_sharpness(scorer, faces):
    user, template, poster = faces
    scores = scorer.score(user, template, poster)
    assert scores["identity_user"] > scores["identity_template"]
    blurred = scorer.score(user, template, cv2.GaussianBlur(poster, (0, 0), 2.0))
    assert blurred["sharpness"] < 0.7 * scores["sharpness"]
    assert blurred["sharpness_vs_user"] < 0.7 * scores["sharpness_vs_user"]
