"""fuse_video around a stand-in fuser: which frames change, order kept, clean cancellation."""

import asyncio

import numpy as np
import pytest

from facefuse.contract import FACE_CROP_PX
from facefuse.video import media
from facefuse.video.fusion import CHUNK_FRAMES, VideoOptions, fuse_video
from facefuse.video.templates import VideoTemplate

FRAMES = 20
RED = np.array([220, 30, 30], np.uint8)


def _template(tmp_path, usable) -> VideoTemplate:
    clip = tmp_path / "clip.mp4"
    frames = [np.full((120, 160, 3), (40, 90, 160), np.uint8) for _ in range(FRAMES)]
    media.write_video(clip, frames, fps=25.0, max_video_kbps=4000)
    # The crop covers the frame's centre, scaled down 4x: 96x96 template pixels.
    affine = np.array([[4, 0, -4 * 32], [0, 4, -4 * 12]], np.float32)
    info = {"width": 160, "height": 120, "fps": 25.0, "frame_count": FRAMES, "duration_s": FRAMES / 25}
    return VideoTemplate("t", 1, clip, np.tile(affine, (FRAMES, 1, 1)), np.zeros((FRAMES, 468, 3), np.float32),
                         np.asarray(usable), info)


async def red_face(template_face, template_mesh):
    face = np.empty((FACE_CROP_PX, FACE_CROP_PX, 3), np.uint8)
    face[:] = RED
    return face, np.full((FACE_CROP_PX, FACE_CROP_PX), 255, np.uint8)


def test_usable_frames_get_the_fused_face_and_the_others_stay_as_they_were(tmp_path):
    usable = [i % 5 != 0 for i in range(FRAMES)]  # frames 0, 5, 10, 15 lost
    template = _template(tmp_path, usable)
    out = tmp_path / "out.mp4"
    progress = []

    async def record(done, total):
        progress.append((done, total))

    assert asyncio.run(fuse_video(template, red_face, out, VideoOptions(add_label=False), progress=record)) == FRAMES
    frames = list(media.read_frames(out))
    assert len(frames) == FRAMES
    for number, frame in enumerate(frames):
        centre, corner = frame[60, 80].astype(int), frame[5, 5].astype(int)
        assert np.abs(corner - (40, 90, 160)).max() < 12  # outside the face: the template
        if usable[number]:
            assert np.abs(centre - RED).max() < 25, number
        else:
            assert np.abs(centre - (40, 90, 160)).max() < 12, number
    assert progress[-1] == (FRAMES, FRAMES)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert progress[0][0] == CHUNK_FRAMES


def test_out_of_range_degrees_are_refused_before_any_work(tmp_path):
    from facefuse.errors import OptionError

    with pytest.raises(OptionError):
        asyncio.run(fuse_video(_template(tmp_path, [True] * FRAMES), red_face, tmp_path / "o.mp4",
                               VideoOptions(fuse_degree=101)))


def test_cancelling_a_video_midway_stops_it_without_breaking_the_encoder(tmp_path):
    template = _template(tmp_path, [True] * FRAMES)
    calls = []

    async def slow_face(template_face, template_mesh):
        calls.append(1)
        await asyncio.sleep(0.05)
        return await red_face(template_face, template_mesh)

    async def scenario():
        task = asyncio.ensure_future(fuse_video(template, slow_face, tmp_path / "o.mp4", VideoOptions()))
        while len(calls) < CHUNK_FRAMES + 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker carries on with the next job in the same process.
        return await fuse_video(template, red_face, tmp_path / "next.mp4", VideoOptions())

    assert asyncio.run(scenario()) == FRAMES
    assert media.probe(tmp_path / "next.mp4").frame_count == FRAMES
