"""H.264 writing and reading with PyAV: what browsers play, the rate kept, audio copied."""

import fractions

import av
import numpy as np

from facefuse.video import media


def _frames(count: int, width: int = 320, height: int = 240):
    for number in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, :, 1] = 80
        frame[40:120, 10 + 4 * number: 90 + 4 * number] = (230, 180, 40)  # a moving block
        yield frame


def _with_audio(path, seconds: float, rate: int = 16000) -> None:
    """A clip with a sine-tone AAC track, standing in for a template with sound."""
    with av.open(str(path), "w", format="mp4") as output:
        video = output.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = output.add_stream("aac", rate=rate)
        for number, rgb in enumerate(_frames(int(seconds * 25))):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = number
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        samples = np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate).astype(np.float32)[None]
        for start in range(0, samples.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="fltp",
                                               layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, fractions.Fraction(1, rate)
            output.mux(audio.encode(chunk))
        output.mux(audio.encode(None))


def test_written_video_is_h264_yuv420p_with_the_index_first_and_the_given_rate(tmp_path):
    path = tmp_path / "out.mp4"
    assert media.write_video(path, _frames(30), fps=25.0) == 30
    info = media.probe(path)
    assert (info.width, info.height, info.frame_count, info.fps) == (320, 240, 30, 25.0)
    assert abs(info.duration_s - 1.2) < 1e-6
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading


def test_frames_read_back_match_the_frames_written_within_codec_tolerance(tmp_path):
    path = tmp_path / "out.mp4"
    written = list(_frames(10))
    media.write_video(path, written, fps=25.0)
    read = list(media.read_frames(path))
    assert len(read) == 10
    for original, decoded in zip(written, read):
        assert np.abs(original.astype(int) - decoded.astype(int)).mean() < 3.0


def test_the_audio_track_is_copied_up_to_the_video_length(tmp_path):
    source = tmp_path / "with-audio.mp4"
    _with_audio(source, seconds=2.0)
    assert media.probe(source).has_audio
    trimmed = tmp_path / "trimmed.mp4"
    media.trim(source, trimmed, max_seconds=1.0)
    info = media.probe(trimmed)
    assert info.has_audio and info.frame_count == 25
    with av.open(str(trimmed)) as container:
        audio = container.streams.audio[0]
        seconds = sum(f.samples for f in container.decode(audio)) / audio.rate
    assert 0.9 < seconds < 1.15


def test_the_bit_rate_cap_keeps_noisy_video_small(tmp_path):
    rng = np.random.default_rng(0)
    noise = (rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(50))
    path = tmp_path / "noise.mp4"
    media.write_video(path, noise, fps=25.0, max_video_kbps=400)
    # 2 s at 400 kbit/s is 100 kB; pure noise at quality settings alone would be megabytes.
    assert path.stat().st_size < 200_000


def test_a_720p_clip_at_the_default_cap_keeps_to_the_cap_plus_one_second_of_buffer(tmp_path):
    """The worst case for the encoder (fresh noise in every frame), 2 s of 720p at 25 fps:
    at most (2 s + 1 s of buffer) at the cap, which for 15 s is 4 MB (under 5 MB with audio)."""
    rng = np.random.default_rng(1)
    frames = (rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(50))
    path = tmp_path / "noise-720p.mp4"
    media.write_video(path, frames, fps=25.0)
    assert media.probe(path).frame_count == 50
    assert path.stat().st_size <= (2 + 1) * media.DEFAULT_MAX_VIDEO_KBPS * 1000 / 8
    assert (15 + 1) * media.DEFAULT_MAX_VIDEO_KBPS * 1000 / 8 + 15 * 128_000 / 8 < 5_000_000
