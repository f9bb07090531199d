"""Photo fusion end to end on a real tritonserver with real photos."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from tritonclient.utils import InferenceServerException

from facefuse.errors import Reason, reason_from_message
from facefuse.local_pipeline import LocalPipeline
from facefuse.triton_client import (
    ANALYZE_OUTPUTS, POSTER_OUTPUT, FuseOptions, analyze_inputs, fuse_inputs, fusion_inputs, fusion_stages, poster_bytes,
)
from facefuse.vision.alignment import warp_to_crop
from photo_bytes import encoded, rgb_of

TEMPLATE = "hopper-portrait"


def fuse(client, photo: bytes, template: str = TEMPLATE, face: int = 0, **options) -> np.ndarray:
    options.setdefault("output_format", "png")
    result = client.infer("face_fusion", fusion_inputs(photo, template, face, FuseOptions(**options)), outputs=POSTER_OUTPUT)
    return np.asarray(Image.open(io.BytesIO(poster_bytes(result))).convert("RGB"))


def reason_of(client, photo: bytes, template: str = TEMPLATE, face: int = 0) -> Reason | None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("face_fusion", fusion_inputs(photo, template, face), outputs=POSTER_OUTPUT)
    return reason_from_message(info.value.message())


@pytest.fixture(scope="module")
def local(settings):
    return LocalPipeline(settings)


@pytest.fixture(scope="module")
def template(template_store):
    return template_store.load(TEMPLATE)


def changed_region(template, poster: np.ndarray) -> np.ndarray:
    return np.any(poster != template.image, axis=-1)


def test_poster_has_the_template_size_and_a_face_where_the_template_face_was(triton_client, local, template, astronaut):
    poster = fuse(triton_client, astronaut)
    assert poster.shape == template.image.shape
    detections = local.analyze_template("check", encoded(poster, "PNG"))
    box, template_box = detections.boxes[0][:4], template.boxes[0][:4]
    overlap = np.maximum(0, np.minimum(box[2:], template_box[2:]) - np.maximum(box[:2], template_box[:2])).prod()
    union = np.prod(box[2:] - box[:2]) + np.prod(template_box[2:] - template_box[:2]) - overlap
    assert overlap / union > 0.6


def test_outside_the_face_region_the_poster_is_the_template_bit_for_bit(triton_client, template, astronaut):
    poster = fuse(triton_client, astronaut, add_label=False)
    changed = changed_region(template, poster)
    assert changed.any()
    ys, xs = np.nonzero(changed)
    x0, y0, x1, y1 = template.boxes[0][:4]
    size = max(x1 - x0, y1 - y0)
    # Everything that changed lies near the template face.
    assert xs.min() > x0 - size and xs.max() < x1 + size and ys.min() > y0 - size and ys.max() < y1 + size
    # And most of the picture did not change at all.
    assert changed.mean() < 0.35


def test_jpeg_output_matches_the_template_outside_the_face_within_jpeg_tolerance(triton_client, template, astronaut):
    png = fuse(triton_client, astronaut, add_label=False)
    jpeg = fuse(triton_client, astronaut, add_label=False, output_format="jpeg", output_quality=95)
    outside = ~changed_region(template, png)
    assert np.abs(jpeg.astype(int) - template.image.astype(int))[outside].mean() < 2.0


def structure_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of standardised luminance: compares features, not colour or lighting."""
    la, lb = a.mean(-1).ravel(), b.mean(-1).ravel()
    return float(np.corrcoef(la, lb)[0, 1])


def test_the_face_moves_toward_the_users_as_fuse_degree_rises(triton_client, template, local, astronaut):
    user_face = local.analyze_user(astronaut).faces[0].astype(float)
    template_face = template.faces[0].astype(float)
    inner = (slice(150, 300), slice(120, 264))  # eyes to chin in the canonical crop
    distances_to_template, similarity_to_user = [], []
    for degree in (0, 50, 100):
        # profile 100: the face takes the user's shape, so features line up with the user's crop.
        poster = fuse(triton_client, astronaut, fuse_degree=degree, profile_degree=100, add_label=False)
        face = warp_to_crop(poster, template.affines[0], 384).astype(float)
        distances_to_template.append(np.abs(face[inner] - template_face[inner]).mean())
        similarity_to_user.append(structure_similarity(face[inner], user_face[inner]))
    assert distances_to_template == sorted(distances_to_template)
    assert similarity_to_user == sorted(similarity_to_user)
    assert similarity_to_user[-1] - similarity_to_user[0] > 0.1


def test_profile_degree_changes_the_poster_visibly_at_each_step(triton_client, template, astronaut):
    previous, changes = None, []
    for degree in (0, 50, 100):
        # (Grace Hopper into the astronaut posters at fuse 80 is refused by the poster check.)
        poster = fuse(triton_client, astronaut, template="painted-hopper", profile_degree=degree, add_label=False)
        if previous is not None:
            changes.append(np.abs(poster.astype(int) - previous.astype(int)).mean())
        previous = poster
    assert all(change > 0.05 for change in changes)


def test_the_label_is_on_by_default_and_can_be_switched_off(triton_client, template, astronaut):
    labelled, plain = fuse(triton_client, astronaut), fuse(triton_client, astronaut, add_label=False)
    corner = (slice(-30, None), slice(-150, None))
    assert np.array_equal(plain[corner], template.image[corner])
    assert np.abs(labelled[corner].astype(int) - template.image[corner].astype(int)).mean() > 10


def test_stylized_and_multi_face_templates_fuse(triton_client, grace_hopper, astronaut, template_store):
    comic = fuse(triton_client, astronaut, template="comic-astronaut")
    assert comic.shape == template_store.load("comic-astronaut").image.shape

    group = template_store.load("group-six")
    assert group.face_count == 6
    users = [triton_client.infer("face_analyze", analyze_inputs(p), outputs=ANALYZE_OUTPUTS) for p in (astronaut, grace_hopper)]
    faces = np.concatenate([u.as_numpy("user_faces")[0] for u in users])
    meshes = np.concatenate([u.as_numpy("user_meshes")[0] for u in users])
    result = triton_client.infer(
        "face_fuse", fuse_inputs(faces, meshes, "group-six", [1, 4], FuseOptions(output_format="png", add_label=False)),
        outputs=POSTER_OUTPUT,
    )
    poster = rgb_of(poster_bytes(result))
    assert poster.shape == group.image.shape
    for index in range(6):
        x0, y0, x1, y1 = group.boxes[index][:4].astype(int)
        changed = np.any(poster[max(y0, 0):y1, max(x0, 0):x1] != group.image[max(y0, 0):y1, max(x0, 0):x1], -1).mean()
        assert (changed > 0.3) == (index in (1, 4)), f"face {index} changed {changed:.0%}"


@pytest.mark.parametrize(
    "make_photo, reason",
    [
        (lambda p: b"", Reason.IMAGE_DECODE_FAILED),
        (lambda p: b"\x00garbage bytes that are no image", Reason.IMAGE_DECODE_FAILED),
        (lambda p: p["astronaut"][: len(p["astronaut"]) // 2], Reason.IMAGE_DECODE_FAILED),
        (lambda p: p["coffee"], Reason.NO_FACE_DETECTED),
        (lambda p: encoded(rgb_of(p["astronaut"]), "GIF"), Reason.IMAGE_FORMAT_UNSUPPORTED),
        (lambda p: encoded(np.zeros((20, 4200, 3), np.uint8), "PNG"), Reason.IMAGE_PIXELS_EXCEEDED),
        (lambda p: p["astronaut"] + b"\0" * (11 * 1024 * 1024), Reason.IMAGE_TOO_LARGE),
        # The astronaut shrunk to 110 px: her face is about 22 px.
        (lambda p: encoded(np.asarray(Image.fromarray(rgb_of(p["astronaut"])).resize((110, 110)))), Reason.FACE_TOO_SMALL),
        # Cut through the middle of her face.
        (lambda p: encoded(rgb_of(p["astronaut"])[:, 225:]), Reason.FACE_EXCEEDS_BORDER),
    ],
    ids=["empty", "garbage", "truncated", "no-face", "gif", "too-many-pixels", "too-many-bytes", "face-too-small", "face-cut-off"],
)
def test_bad_photos_get_their_typed_reason(triton_client, astronaut, coffee, make_photo, reason):
    photo = make_photo({"astronaut": astronaut, "coffee": coffee})
    assert reason_of(triton_client, photo) is reason


def test_unknown_template_and_face_index_get_their_reasons(triton_client, astronaut):
    assert reason_of(triton_client, astronaut, template="no-such-template") is Reason.TEMPLATE_NOT_FOUND
    assert reason_of(triton_client, astronaut, face=3) is Reason.TEMPLATE_FACE_NOT_FOUND


def test_rotated_greyscale_cmyk_and_transparent_photos_are_accepted(triton_client, astronaut):
    rgb = rgb_of(astronaut)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated; displayed upright after a 90-degree turn
    rotated = encoded(np.rot90(rgb, k=-1).copy(), "JPEG", exif=exif.tobytes())
    grey = encoded(rgb.mean(-1).astype(np.uint8), "JPEG")
    out = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(out, format="JPEG")
    cmyk = out.getvalue()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    transparent = encoded(rgba, "PNG")
    for photo in (rotated, grey, cmyk, transparent):
        assert fuse(triton_client, photo).shape[2] == 3


def batching_counts(client, model: str) -> tuple[int, int]:
    """(requests, executions) of `model` so far, from Triton's statistics; fewer
    executions than requests means requests ran together in dynamic batches."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    return (sum(int(s.get("inference_count", 0)) for s in stats),
            sum(int(s.get("execution_count", 0)) for s in stats))


def run_steps(client, steps, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An ensemble's steps (facefuse_build.configs.Step) called one model at a time, as
    Triton's ensemble scheduler calls them: each step's outputs join the tensors."""
    from tritonclient.grpc import InferInput, InferRequestedOutput

    for step in steps:
        config = client.get_model_config(step.model, as_json=True)["config"]
        types = {t["name"]: t["data_type"].removeprefix("TYPE_").replace("STRING", "BYTES") for t in config["input"]}
        inputs = []
        for name, tensor in step.input_map.items():
            inputs.append(InferInput(name, list(tensors[tensor].shape), types[name]))
            inputs[-1].set_data_from_numpy(tensors[tensor])
        result = client.infer(step.model, inputs, outputs=[InferRequestedOutput(n) for n in step.output_map])
        tensors.update({tensor: result.as_numpy(name) for name, tensor in step.output_map.items()})
    return tensors


def test_the_gpu_profiles_separate_models_make_the_cpu_steps_poster_and_verify_through_bls(triton_client, astronaut):
    # The gpu profile's template side (template_bank, fuse, beautify, postprocess, whose
    # verification calls face_landmarks through BLS) runs on CPU too, model by model.
    from facefuse_build.configs import TEMPLATE_SIDE

    analysed = triton_client.infer("face_analyze", analyze_inputs(astronaut), outputs=ANALYZE_OUTPUTS)
    user_faces, user_meshes = analysed.as_numpy("user_faces"), analysed.as_numpy("user_meshes")
    options = FuseOptions(add_label=False, output_format="png")
    landmarks_before = batching_counts(triton_client, "face_landmarks")[0]
    cpu_steps = rgb_of(poster_bytes(triton_client.infer(
        "face_fuse", fuse_inputs(user_faces[0], user_meshes[0], TEMPLATE, [0], options), outputs=POSTER_OUTPUT)))
    assert batching_counts(triton_client, "face_landmarks")[0] == landmarks_before  # verified in fuse_faces' own process
    tensors = run_steps(triton_client, TEMPLATE_SIDE, {
        "user_faces": user_faces, "user_meshes": user_meshes,
        "template_id": np.array([[TEMPLATE.encode()]], np.object_), "face_indices": np.array([[0]], np.int32),
        "fuse_degree": np.array([[options.fuse_degree]], np.float32),
        "profile_degree": np.array([[options.profile_degree]], np.float32),
        "add_label": np.array([[False]]), "output_format": np.array([[b"png"]], np.object_),
        "output_quality": np.array([[options.output_quality]], np.int32), "beauty": options.beauty.tensor(),
    })
    assert batching_counts(triton_client, "face_landmarks")[0] == landmarks_before + 1  # postprocess's BLS call
    separate_models = rgb_of(tensors["poster"].reshape(-1)[0])
    assert separate_models.shape == cpu_steps.shape
    assert np.abs(separate_models.astype(int) - cpu_steps.astype(int)).max() <= 1


def test_a_bad_photo_in_a_dynamic_batch_fails_only_its_own_request(triton_client, astronaut, coffee):
    photos = [astronaut, coffee, b"junk", astronaut, coffee, astronaut, b"", astronaut] * 2
    # decode refuses the junk and the empty photo; align finds no face in the coffee cup
    # (on the cpu profile both run in its detect_faces step).
    stages = ("detect_faces",) if "detect_faces" in fusion_stages(triton_client) else ("decode", "align")
    expected = {astronaut: "ok", coffee: Reason.NO_FACE_DETECTED, b"junk": Reason.IMAGE_DECODE_FAILED, b"": Reason.IMAGE_DECODE_FAILED}

    def call(photo):
        try:
            fuse(triton_client, photo)
            return "ok"
        except InferenceServerException as exc:
            return reason_from_message(exc.message())

    batched = {stage: False for stage in stages}
    for _ in range(5):  # a round whose calls happen to arrive one by one shows no batch: send another
        before = {stage: batching_counts(triton_client, stage) for stage in stages}
        with ThreadPoolExecutor(max_workers=len(photos)) as pool:
            outcomes = list(pool.map(call, photos))
        assert outcomes == [expected[p] for p in photos]  # every good photo served, every bad one its reason
        for stage in stages:
            (requests, executions), (requests_before, executions_before) = batching_counts(triton_client, stage), before[stage]
            batched[stage] |= executions - executions_before < requests - requests_before
        if all(batched.values()):
            break
    assert all(batched.values()), f"no dynamic batch formed in {[s for s, b in batched.items() if not b]}"


def test_a_template_added_replaced_or_removed_while_serving_takes_effect_without_restart(
    triton_client, template_store, local, astronaut, grace_hopper
):
    template_id = "hot-swap-check"
    if template_id in template_store.ids():
        template_store.remove(template_id)
    assert reason_of(triton_client, astronaut, template=template_id) is Reason.TEMPLATE_NOT_FOUND

    template_store.add(local.analyze_template(template_id, grace_hopper))
    first = fuse(triton_client, astronaut, template=template_id)
    assert first.shape == rgb_of(grace_hopper).shape

    painted = np.asarray(Image.fromarray(rgb_of(grace_hopper)).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    template_store.add(local.analyze_template(template_id, encoded(painted, "PNG")))
    second = fuse(triton_client, astronaut, template=template_id)
    assert np.abs(second.astype(int) - first.astype(int)).mean() > 5

    template_store.remove(template_id)
    assert reason_of(triton_client, astronaut, template=template_id) is Reason.TEMPLATE_NOT_FOUND
