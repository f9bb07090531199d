"""Reading and writing video files with PyAV (FFmpeg's libraries, H.264 bundled).

Written videos are what browsers play: H.264 in MP4, yuv420p, the index at the front
(`faststart`), and a bit-rate cap so a 15 s 720p clip stays under 5 MB. The audio track
of the template is copied packet for packet (no re-encoding, no loss).
"""

from __future__ import annotations

import fractions
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from facefuse.errors import OptionError

# The encoder may spend at most its buffer (one second at the cap) beyond the cap, so a
# 15 s clip is at most 16 s x 2000 kbit/s = 4 MB of video, plus its copied audio (AAC,
# about 0.25 MB at 128 kbit/s): under 5 MB.
DEFAULT_MAX_VIDEO_KBPS = 2000
# Quality-driven encoding (constant rate factor) under the cap: simple scenes stay small.
DEFAULT_CRF = 23


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    has_audio: bool


def probe(path: Path) -> VideoInfo:
    """Size, rate and exact frame count (the frames are decoded and counted: container
    headers often lie about the count)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise OptionError(f"{path} holds no video stream")
            stream = container.streams.video[0]
            count = sum(1 for _ in container.decode(stream))
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            has_audio = bool(container.streams.audio)
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.error.FFmpegError as exc:
        raise OptionError(f"{path} is not a readable video: {exc}") from None
    return VideoInfo(width, height, fps, count, count / fps if fps else 0.0, has_audio)


def probe_bytes(data: bytes) -> VideoInfo:
    """probe() for a video held in memory (a downloaded result)."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        handle.write(data)
        handle.flush()
        return probe(Path(handle.name))


def read_frames(path: Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8, in display order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for number, frame in enumerate(container.decode(stream)):
            if max_frames is not None and number >= max_frames:
                return
            yield frame.to_ndarray(format="rgb24")


class VideoWriter:
    """Encode RGB frames to H.264 MP4 as they come; `close` copies the audio of
    audio_from (up to the video's length, or max_duration_s) and finishes the file."""

    def __init__(self, path: Path, fps: float, max_video_kbps: int = DEFAULT_MAX_VIDEO_KBPS,
                 audio_from: Path | None = None, max_duration_s: float | None = None, crf: int = DEFAULT_CRF):
        self.rate = fractions.Fraction(fps).limit_denominator(1001)
        self.fps = fps
        self.audio_from, self.max_duration_s = audio_from, max_duration_s
        self.written = 0
        self.output = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        self.video = self.output.add_stream("libx264", rate=self.rate)
        self.video.pix_fmt = "yuv420p"
        self.video.options = {
            "crf": str(crf), "maxrate": f"{max_video_kbps}k", "bufsize": f"{max_video_kbps}k",
            "preset": "veryfast",
        }
        # The audio stream must exist before the first packet is written.
        self.audio_in = self.audio_out = None
        if audio_from is not None:
            self.audio_in = av.open(str(audio_from))
            if self.audio_in.streams.audio:
                self.audio_out = self.output.add_stream_from_template(self.audio_in.streams.audio[0])

    def write(self, rgb: np.ndarray) -> None:
        if self.written == 0:
            self.video.height, self.video.width = rgb.shape[:2]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.written
        frame.time_base = 1 / self.rate
        self.output.mux(self.video.encode(frame))
        self.written += 1

    def write_all(self, frames: Iterable[np.ndarray]) -> None:
        for rgb in frames:
            self.write(rgb)

    def close(self) -> int:
        """Finish the file; returns the number of frames written."""
        self.output.mux(self.video.encode(None))
        if self.audio_out is not None:
            until = self.max_duration_s if self.max_duration_s is not None else self.written / self.fps
            _copy_audio(self.audio_in, self.audio_out, self.output, until)
        self.abort()
        return self.written

    def abort(self) -> None:
        """Release the files (after close, or instead of it on failure)."""
        if self.audio_in is not None:
            self.audio_in.close()
            self.audio_in = None
        if self.output is not None:
            self.output.close()
            self.output = None


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, audio_from: Path | None = None,
                max_duration_s: float | None = None, max_video_kbps: int = DEFAULT_MAX_VIDEO_KBPS) -> int:
    """Encode RGB frames to H.264 MP4; returns the number of frames written."""
    writer = VideoWriter(path, fps, max_video_kbps, audio_from, max_duration_s)
    try:
        writer.write_all(frames)
        return writer.close()
    finally:
        writer.abort()


def trim(source: Path, target: Path, max_seconds: float) -> None:
    """The first max_seconds of source, re-encoded at high quality, with its audio."""
    fps = probe(source).fps
    frames = read_frames(source, max_frames=max(1, int(round(max_seconds * fps))))
    write_video(target, frames, fps, audio_from=source, max_duration_s=max_seconds, max_video_kbps=8000)


def _copy_audio(source, stream_out, output, until_s: float) -> None:
    stream_in = source.streams.audio[0]
    for packet in source.demux(stream_in):
        if packet.dts is None:  # the demuxer's flush packet
            continue
        if packet.pts is not None and float(packet.pts * stream_in.time_base) >= until_s:
            break
        packet.stream = stream_out
        output.mux(packet)
