"""Photos first: a video job's fuse calls wait while photo calls are in flight."""

import asyncio
from types import SimpleNamespace

import numpy as np

from facefuse.jobs.worker import TritonFrameFuser
from facefuse.video.fusion import VideoOptions
from facefuse.video.settings import VideoSettings

CROP = np.zeros((384, 384, 3), np.uint8)
MESH = np.zeros((468, 3), np.float32)


class RecordingPool:
    """Stands in for TritonPool: counts calls in flight per replica, as the real one does."""

    def __init__(self):
        self.replicas = [SimpleNamespace(in_flight=0)]
        self.video_calls_started_during_photo = 0
        self.photo_running = False
        self.most_video_in_flight = 0
        self.video_in_flight = 0
        self.priorities = []

    def calls_in_flight(self) -> int:
        return sum(r.in_flight for r in self.replicas)

    async def infer(self, model, inputs, outputs, deadline, priority=0):
        self.priorities.append((model, priority))
        if self.photo_running:
            self.video_calls_started_during_photo += 1
        self.replicas[0].in_flight += 1
        self.video_in_flight += 1
        self.most_video_in_flight = max(self.most_video_in_flight, self.video_in_flight)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.replicas[0].in_flight -= 1
            self.video_in_flight -= 1
        return SimpleNamespace(as_numpy=lambda name: np.zeros((1, 1, 384, 384, 3) if name == "fused_faces"
                                                               else (1, 1, 384, 384), np.uint8))

    async def photo_call(self, seconds: float):
        self.photo_running = True
        self.replicas[0].in_flight += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.replicas[0].in_flight -= 1
            self.photo_running = False


def _fuser(pool, **settings):
    return TritonFrameFuser(pool, CROP[None], MESH[None], VideoOptions(), VideoSettings(**settings), [0])


def test_video_frames_wait_while_a_photo_call_is_in_flight():
    async def scenario():
        pool = RecordingPool()
        fuser = _fuser(pool, frames_in_flight=4, photo_priority_max_wait_s=10.0)
        photo = asyncio.ensure_future(pool.photo_call(0.2))
        await asyncio.sleep(0)  # the photo call is in flight first
        await asyncio.gather(*[fuser(CROP, MESH) for _ in range(12)])
        await photo
        return pool

    pool = asyncio.run(scenario())
    assert pool.video_calls_started_during_photo == 0


def test_a_job_keeps_at_most_frames_in_flight_calls_in_tritons_queues():
    async def scenario():
        pool = RecordingPool()
        fuser = _fuser(pool, frames_in_flight=3)
        await asyncio.gather(*[fuser(CROP, MESH) for _ in range(20)])
        return pool

    assert asyncio.run(scenario()).most_video_in_flight == 3


def test_photo_priority_gives_way_after_its_longest_wait_so_videos_are_not_starved():
    async def scenario():
        pool = RecordingPool()
        fuser = _fuser(pool, frames_in_flight=2, photo_priority_max_wait_s=0.05)
        photo = asyncio.ensure_future(pool.photo_call(1.0))
        await asyncio.sleep(0)
        await asyncio.gather(*[fuser(CROP, MESH) for _ in range(4)])
        done_during_photo = pool.video_calls_started_during_photo
        await photo
        return done_during_photo

    assert asyncio.run(scenario()) == 4


def test_a_frame_shed_by_an_overloaded_gateway_waits_and_is_sent_again():
    from facefuse.gateway.errors import Overloaded

    class SheddingOnce(RecordingPool):
        shed = False

        async def infer(self, model, inputs, outputs, deadline, priority=0):
            if not self.shed:
                self.shed = True
                raise Overloaded("every replica is full", retry_after_s=0.01)
            return await super().infer(model, inputs, outputs, deadline, priority)

    pool = SheddingOnce()
    face, mask = asyncio.run(_fuser(pool)(CROP, MESH))
    assert pool.shed and face.shape == (384, 384, 3) and mask.shape == (384, 384)


def test_every_frame_is_sent_to_fuse_at_tritons_low_priority_level():
    from facefuse.contract import PHOTO_PRIORITY, VIDEO_FRAME_PRIORITY

    async def scenario():
        pool = RecordingPool()
        await asyncio.gather(*[_fuser(pool)(CROP, MESH) for _ in range(5)])
        return pool

    priorities = asyncio.run(scenario()).priorities
    assert priorities == [("fuse", VIDEO_FRAME_PRIORITY)] * 5 and VIDEO_FRAME_PRIORITY != PHOTO_PRIORITY
