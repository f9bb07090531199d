"""A fused video: the user's analysed face into every usable frame of a video template.

The fusing itself is passed in (`FuseFrames`): the job worker sends each frame to
Triton's `fuse` model (separate same-shaped requests that its dynamic batcher groups),
the benchmark's baseline runs the same ONNX in-process. Around it: the template frames
are decoded, each usable frame's crop is cut with the registered affine, the fused crop
is pasted back through its soft mask with the photo stage's own paste (`paste_faces`),
the AI-synthesis label drawn, and the frames encoded to H.264 with the template's audio.
Unusable frames and every pixel outside the mask keep the template's values.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

from facefuse.contract import DEFAULT_FUSE_DEGREE, DEFAULT_PROFILE_DEGREE, DEGREE_RANGE
from facefuse.errors import OptionError
from facefuse.vision.alignment import warp_to_crop
from facefuse.vision.compositing import draw_label, paste_faces
from facefuse.video import media
from facefuse.video.templates import VideoTemplate

# (template crop (F, F, 3) uint8, template mesh (468, 3)) -> (fused crop, mask (F, F) uint8)
FuseFrame = Callable[[np.ndarray, np.ndarray], Awaitable[tuple[np.ndarray, np.ndarray]]]
# Frames handled per step: decoded and encoded together, fused concurrently.
CHUNK_FRAMES = 8


@dataclass(frozen=True)
class VideoOptions:
    fuse_degree: float = DEFAULT_FUSE_DEGREE
    profile_degree: float = DEFAULT_PROFILE_DEGREE
    add_label: bool = True

    def validated(self) -> "VideoOptions":
        low, high = DEGREE_RANGE
        for name in ("fuse_degree", "profile_degree"):
            value = getattr(self, name)
            if not low <= value <= high:
                raise OptionError(f"{name} {value} is out of range; use {low:g}..{high:g}")
        return self


@dataclass
class StageTimes:
    """Wall seconds per stage of one video (the benchmark reports them)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, since: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - since


def _crops(template: VideoTemplate, frames: list[np.ndarray], first: int) -> list[np.ndarray | None]:
    """Each usable frame's face crop, cut straight at the clip's working size."""
    size, affines, _ = template.working_side
    return [
        warp_to_crop(frame, affines[first + i], size) if template.usable[first + i] else None
        for i, frame in enumerate(frames)
    ]


def _composite(template: VideoTemplate, frames, fused, first: int, add_label: bool) -> list[np.ndarray]:
    out = []
    for i, frame in enumerate(frames):
        if fused[i] is not None:
            face, mask = fused[i]
            # Grain changes from frame to frame, as film grain does (a fixed pattern would
            # sit on the screen while the face moves under it).
            affine = template.working_side[1][first + i]
            frame = paste_faces(frame, face[None], mask[None], affine[None], grain_seed=first + i)
        out.append(draw_label(frame) if add_label else frame)
    return out


async def fuse_video(
    template: VideoTemplate, fuse_frame: FuseFrame, out_path: Path, options: VideoOptions,
    max_video_kbps: int = media.DEFAULT_MAX_VIDEO_KBPS,
    progress: Callable[[int, int], Awaitable[None]] | None = None, times: StageTimes | None = None,
) -> int:
    """Write the fused video to out_path; returns its frame count. progress(done, total)
    is awaited after every chunk (the job worker records it and checks cancellation).

    Pipelined by chunk: while one chunk's frames are being fused (in Triton), the
    previous chunk is pasted and encoded here, so neither side waits for the other."""
    options.validated()
    times = times or StageTimes()
    total = template.frame_count
    loop = asyncio.get_running_loop()
    # Decoding and encoding run on one thread of their own, in order: when the job is
    # cancelled mid-write, the files are closed after that write, never beneath it.
    io = ThreadPoolExecutor(1, thread_name_prefix="facefuse-video-io")
    reader = media.read_frames(template.clip, max_frames=total)
    writer = await loop.run_in_executor(
        io, lambda: media.VideoWriter(out_path, template.info["fps"], max_video_kbps, audio_from=template.clip))
    read = written = 0
    pending: tuple[list[np.ndarray], int, asyncio.Future] | None = None
    try:
        while True:
            started = time.perf_counter()
            frames = await loop.run_in_executor(io, lambda: [f for _, f in zip(range(CHUNK_FRAMES), reader)])
            times.add("decode", started)
            fusing = None
            if frames:
                started = time.perf_counter()
                crops = await asyncio.to_thread(_crops, template, frames, read)
                times.add("crop", started)
                fusing = asyncio.ensure_future(_fuse_chunk(fuse_frame, template, crops, read, times))
            if pending is not None:
                written = await _finish_chunk(template, writer, io, *pending, options.add_label, times)
                if progress is not None:
                    await progress(written, total)
            if fusing is None:
                break
            pending = (frames, read, fusing)
            read += len(frames)
        started = time.perf_counter()
        await loop.run_in_executor(io, writer.close)
        times.add("encode", started)
    finally:
        if pending is not None and not pending[2].done():
            pending[2].cancel()
            await asyncio.gather(pending[2], return_exceptions=True)
        io.submit(writer.abort)
        io.submit(reader.close)
        io.shutdown(wait=False)
    return written


async def _fuse_chunk(fuse_frame: FuseFrame, template: VideoTemplate, crops, first: int, times: StageTimes):
    started = time.perf_counter()
    fused = await asyncio.gather(*[
        fuse_frame(crop, template.working_side[2][first + i]) if crop is not None else _none()
        for i, crop in enumerate(crops)
    ])
    times.add("fuse", started)
    return fused


async def _finish_chunk(template, writer, io, frames, first: int, fusing: asyncio.Future, add_label: bool,
                        times: StageTimes) -> int:
    """Paste, label and encode one fused chunk; returns the frames written so far."""
    fused = await fusing
    started = time.perf_counter()
    out = await asyncio.to_thread(_composite, template, frames, fused, first, add_label)
    times.add("postprocess", started)
    started = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(io, writer.write_all, out)
    times.add("encode", started)
    return first + len(frames)


async def _none():
    return None
