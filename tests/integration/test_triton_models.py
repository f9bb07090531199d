"""The built cpu repository served by a real tritonserver: every model ready, real inferences."""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from facefuse.contract import DETECTOR_INPUT_PX
from facefuse.settings import get_settings
from facefuse.server.triton import MALLOC_TUNABLES, OPENCV_THREADS
from facefuse.stages.align import AlignParams, align_faces, detect
from facefuse.stages.decode import DecodeParams, decode
from facefuse_build.configs import Profile, model_specs

# The cpu profile's models: the stages, its networks and its in-process steps.
MODELS = tuple(spec.name for spec in model_specs(Profile("cpu"), get_settings()))
ENSEMBLES = ("face_analyze", "face_fuse", "face_fusion", "face_beautify")


def infer(client, model, **inputs):
    tensors = []
    for name, (dtype, value) in inputs.items():
        tensor = grpcclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return client.infer(model, tensors)


def test_every_model_and_ensemble_is_ready(triton_client):
    for name in MODELS + ENSEMBLES:
        assert triton_client.is_model_ready(name), name


def test_detector_finds_the_astronaut_face_and_the_mesh_lies_inside_its_box(triton_client, astronaut):
    size = DETECTOR_INPUT_PX["cpu"]
    decoded = decode(astronaut, DecodeParams(size))
    raw = infer(triton_client, "face_detector", detector_image=("UINT8", decoded.detector_image[None]))
    outputs = [raw.as_numpy(n)[0] for n in ("box_deltas", "face_probs", "keypoint_deltas")]
    detections = detect(*outputs, decoded.letterbox_scale, AlignParams(size))
    assert detections, "no face detected in the astronaut photo"
    best = detections[0]
    assert best.score > 0.9

    aligned = align_faces(decoded.image, [best])
    mesh = infer(triton_client, "face_landmarks", faces=("UINT8", aligned.faces[None])).as_numpy("face_meshes")[0, 0]
    assert mesh.shape == (468, 3)
    # Mesh points (crop pixels) back into the photo: they must fall inside the box.
    affine = aligned.affines[0].astype(np.float64)
    inverse = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2]
    in_photo = mesh[:, :2] @ inverse[:, :2].T + inverse[:, 2]
    x0, y0, x1, y1 = best.box
    margin = 0.1 * (x1 - x0)
    assert np.all(in_photo[:, 0] > x0 - margin) and np.all(in_photo[:, 0] < x1 + margin)
    assert np.all(in_photo[:, 1] > y0 - margin) and np.all(in_photo[:, 1] < y1 + margin)


def test_a_batch_of_faces_per_request_is_served_by_the_landmark_model(triton_client, group_photo):
    size = DETECTOR_INPUT_PX["cpu"]
    decoded = decode(group_photo, DecodeParams(size, decode_target_side_px=0))
    raw = infer(triton_client, "face_detector", detector_image=("UINT8", decoded.detector_image[None]))
    detections = detect(*[raw.as_numpy(n)[0] for n in ("box_deltas", "face_probs", "keypoint_deltas")],
                        decoded.letterbox_scale, AlignParams(size))
    aligned = align_faces(decoded.image, detections[:6])
    result = infer(triton_client, "face_landmarks", faces=("UINT8", aligned.faces[None]))
    assert result.as_numpy("face_meshes").shape == (1, len(detections[:6]), 468, 3)
    assert np.all(result.as_numpy("face_presence") > 0.5)


def test_the_repository_api_is_closed_without_the_admin_key(settings, built_repository, template_store):
    from tritonclient.utils import InferenceServerException

    from facefuse.server.triton import embedded_triton

    with embedded_triton(settings, admin_key="s3cret") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_model_repository_index()
        index = client.get_model_repository_index(headers={"triton-grpc-protocol-admin-key": "s3cret"})
        assert {m.name for m in index.models} >= set(MODELS)
        assert client.is_model_ready("face_fusion")  # health stays open


def test_the_server_and_every_stub_run_with_the_malloc_tunables_and_opencv_on_one_thread(triton):
    """Without the tunables glibc hands large freed blocks back and every poster faults them
    in again; without one OpenCV thread each stub's loops oversubscribe the cores."""
    pids = [triton.process.pid, *map(int, Path(f"/proc/{triton.process.pid}/task/{triton.process.pid}/children").read_text().split())]
    assert len(pids) >= 1 + len(MODELS)
    for pid in pids:
        # Some glibc versions parse GLIBC_TUNABLES in place, turning each ':' into a NUL.
        environ = Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b":")
        assert f":GLIBC_TUNABLES={MALLOC_TUNABLES}:".encode() in b":" + environ, pid
        assert f":OPENCV_FOR_THREADS_NUM={OPENCV_THREADS}:".encode() in b":" + environ, pid


def test_fuse_queues_photos_before_video_frames_and_serves_a_frame_sent_at_the_low_level(triton_client, astronaut):
    from facefuse.contract import PHOTO_PRIORITY, PRIORITY_LEVELS, VIDEO_FRAME_PRIORITY
    from facefuse.jobs.worker import FUSE_OUTPUTS, fuse_frame_inputs
    from facefuse.triton_client import ANALYZE_OUTPUTS, analyze_inputs
    from facefuse.video.fusion import VideoOptions

    batching = triton_client.get_model_config("fuse", as_json=True)["config"]["dynamic_batching"]
    assert int(batching["priority_levels"]) == PRIORITY_LEVELS
    assert int(batching["default_priority_level"]) == PHOTO_PRIORITY  # photos carry none: the high level
    analysed = triton_client.infer("face_analyze", analyze_inputs(astronaut), outputs=ANALYZE_OUTPUTS)
    faces, meshes = analysed.as_numpy("user_faces")[0], analysed.as_numpy("user_meshes")[0]
    # A video frame as the worker sends it: the photo's face into a frame's face (here the same one).
    inputs = fuse_frame_inputs(faces, meshes, faces[0], meshes[0], VideoOptions())
    fused = triton_client.infer("fuse", inputs, outputs=FUSE_OUTPUTS, priority=VIDEO_FRAME_PRIORITY)
    assert fused.as_numpy("fused_faces").shape == (1, 1, 384, 384, 3)
    assert fused.as_numpy("fused_masks").max() > 0

    # Under contention: a backlog of video frames, then photo calls (no priority given,
    # as the gateway sends them). Queued in arrival order, the photos would finish behind
    # the whole backlog; queued by priority, they pass every frame not already running.
    config = triton_client.get_model_config("fuse", as_json=True)["config"]
    batch = int(config["max_batch_size"])
    # Enough frames that, whatever has finished or runs when the photos arrive (at most a
    # batch per instance, and a batch in the making), many still wait behind them.
    frames, photos = 8 * batch, 4
    finished: queue.Queue = queue.Queue()

    def done(tag):
        return lambda result, error: finished.put((tag, error))

    for _ in range(frames):
        triton_client.async_infer("fuse", inputs, done("frame"), outputs=FUSE_OUTPUTS, priority=VIDEO_FRAME_PRIORITY)
    order = [finished.get(timeout=300)]  # the backlog is being worked through: the rest wait in the queue
    for _ in range(photos):
        triton_client.async_infer("fuse", inputs, done("photo"), outputs=FUSE_OUTPUTS)
    order += [finished.get(timeout=300) for _ in range(frames + photos - 1)]
    assert [error for _, error in order if error is not None] == []
    tags = [tag for tag, _ in order]
    last_photo = max(i for i, tag in enumerate(tags) if tag == "photo")
    # In arrival order at most the frames batched with the photos would finish after them.
    assert tags[last_photo + 1:].count("frame") >= 2 * batch, tags
