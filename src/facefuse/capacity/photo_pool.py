"""Photos a load test sends: real faces at several sizes, plus a few bad ones.

Every photo comes from installed packages (facefuse.samples). Bad photos carry the
reason the service must answer with, so a load test can tell a correct refusal from a
failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from facefuse import samples

# Long side of the re-encoded photos: a thumbnail, a web upload, a phone photo.
SIZES_PX = (384, 768, 1536)


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    expected_reason: str | None = None  # None: must fuse


def _jpeg_at(rgb: np.ndarray, long_side: int) -> bytes:
    image = Image.fromarray(rgb)
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return samples.jpeg(np.asarray(image), quality=90)


def _selfies_from_group() -> list[tuple[str, np.ndarray, str | None]]:
    """The group shot cut into one selfie per face (test-time photo, see facefuse.samples),
    using the face boxes the detector found when `group-six` was registered; a face
    turned past the pose limits (read from its registered mesh) must be refused."""
    from facefuse.vision.face_quality import head_pose_degrees, turn_degrees

    from facefuse.settings import get_settings
    from facefuse.templates import TemplateStore

    settings = get_settings()
    store = TemplateStore(settings.templates_path)
    if "group-six" not in store.ids():
        return []
    template = store.load("group-six")
    height, width = template.image.shape[:2]
    selfies = []
    for index, (x0, y0, x1, y1, _score) in enumerate(template.boxes):
        side = int(max(x1 - x0, y1 - y0) * 2.2)
        cx, cy = int(x0 + x1) // 2, int(y0 + y1) // 2
        top, left = max(cy - side // 2, 0), max(cx - side // 2, 0)
        crop = template.image[top:min(cy + side // 2, height), left:min(cx + side // 2, width)]
        yaw, pitch = head_pose_degrees(template.meshes[index])
        turned = turn_degrees(yaw, pitch) > settings.max_turn_deg
        selfies.append((f"group-face-{index}", crop, "FACE_POSE_UNSUPPORTED" if turned else None))
    return selfies


def good_photos() -> list[Photo]:
    sources = [("astronaut", samples.rgb(samples.astronaut())), ("grace-hopper", samples.rgb(samples.grace_hopper()))]
    photos = [Photo(f"{name}-{size}", _jpeg_at(rgb, size)) for name, rgb in sources for size in SIZES_PX]
    photos += [Photo(name, _jpeg_at(rgb, 512)) for name, rgb, reason in _selfies_from_group() if reason is None]
    return photos


def bad_photos() -> list[Photo]:
    astronaut = samples.astronaut()
    return [
        Photo("coffee", samples.coffee(), "NO_FACE_DETECTED"),
        Photo("truncated", astronaut[: len(astronaut) // 3], "IMAGE_DECODE_FAILED"),
        Photo("tiny-face", _jpeg_at(samples.rgb(astronaut), 110), "FACE_TOO_SMALL"),
        *[Photo(name, _jpeg_at(rgb, 512), reason) for name, rgb, reason in _selfies_from_group() if reason is not None],
    ]
