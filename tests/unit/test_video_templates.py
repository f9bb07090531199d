"""Video template artifacts: versioned like photo templates, listed with their timing."""

import numpy as np
import pytest

from facefuse.errors import Reason, TemplateError
from facefuse.video.templates import VideoTemplateStore

INFO = {"width": 360, "height": 288, "fps": 24.0, "frame_count": 3, "duration_s": 0.125, "usable_frames": 2,
        "has_audio": False, "source": "test"}


def _add(store, tmp_path, marker: bytes = b"clip-1"):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(marker)
    usable = np.array([True, False, True])
    return store.add("talk", clip, np.zeros((3, 2, 3)), np.zeros((3, 468, 3)), usable, INFO)


def test_adding_again_makes_a_new_version_that_serves_next(tmp_path):
    store = VideoTemplateStore(tmp_path / "videos")
    assert _add(store, tmp_path, b"clip-1") == 1
    assert _add(store, tmp_path, b"clip-2") == 2
    loaded = store.load("talk")
    assert loaded.version == 2 and loaded.clip.read_bytes() == b"clip-2"
    assert loaded.usable.tolist() == [True, False, True] and loaded.frame_count == 3
    assert store.load("talk", 1).clip.read_bytes() == b"clip-1"  # kept for rollback
    assert store.info("talk") == {**INFO, "template_id": "talk", "version": 2}
    assert store.ids() == ["talk"]


def test_versions_are_never_reused_after_remove(tmp_path):
    store = VideoTemplateStore(tmp_path / "videos")
    _add(store, tmp_path)
    _add(store, tmp_path)
    store.remove("talk")
    assert store.ids() == []
    with pytest.raises(TemplateError) as caught:
        store.load("talk")
    assert caught.value.reason is Reason.TEMPLATE_NOT_FOUND
    assert _add(store, tmp_path) == 3


def test_only_the_newest_three_versions_are_kept(tmp_path):
    store = VideoTemplateStore(tmp_path / "videos")
    for _ in range(5):
        _add(store, tmp_path)
    assert store.versions("talk") == [3, 4, 5]
