"""Contact sheets: labelled tiles in rows, grouped under kind headings."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

TILE_PX = 128
LABEL_PX = 14
BACKGROUND = (255, 255, 255)


def tile(image: np.ndarray | bytes | None, label: str = "", px: int = TILE_PX, note: str = "") -> Image.Image:
    """One square tile: the image fitted in, a label above; `note` (e.g. a refusal) when there is no image."""
    out = Image.new("RGB", (px, px + LABEL_PX), BACKGROUND)
    if isinstance(image, bytes):
        image = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    draw = ImageDraw.Draw(out)
    if image is not None:
        picture = Image.fromarray(image)
        picture.thumbnail((px, px))
        out.paste(picture, ((px - picture.width) // 2, LABEL_PX + (px - picture.height) // 2))
    elif note:
        draw.rectangle([2, LABEL_PX + 2, px - 3, px + LABEL_PX - 3], outline=(200, 0, 0))
        for i, line in enumerate(_wrap(note, 18)):
            draw.text((6, LABEL_PX + 8 + 12 * i), line, fill=(200, 0, 0))
    draw.text((2, 1), label[: px // 6], fill=(0, 0, 0))
    return out


def _wrap(text: str, width: int) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)]


def heading(text: str, width_px: int) -> Image.Image:
    out = Image.new("RGB", (width_px, 20), (40, 40, 40))
    ImageDraw.Draw(out).text((6, 4), text, fill=(255, 255, 255))
    return out


def stack(rows: list[Image.Image]) -> Image.Image:
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), BACKGROUND)
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    return sheet


def hstack(tiles: list[Image.Image]) -> Image.Image:
    row = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), BACKGROUND)
    x = 0
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width
    return row


def grid(tiles: list[Image.Image], columns: int) -> list[Image.Image]:
    return [hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
