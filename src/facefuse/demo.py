"""The README's run path: serve (Triton + gateway), fuse real photos through the gateway
into the sample templates with the client SDK, stop.

Writes one poster per (photo, template) plus `strip.png`: rows of
photo | template | result at two degree settings, the picture in the README. A poster
that postprocess's check refuses (FUSION_QUALITY_LOW) is a grey tile naming the refusal:
that is the product's answer for that pair, not a failed run.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from facefuse_client import FacefuseClient, InvalidPhotoError
from PIL import Image, ImageDraw

from facefuse import samples
from facefuse.settings import get_settings
from facefuse.templates import TemplateStore

DEGREE_SETTINGS = ((50.0, 0.0), (90.0, 80.0))
PHOTOS = {"astronaut": samples.astronaut, "grace-hopper": samples.grace_hopper}
# Photo -> templates it goes into (a person is not fused into their own portrait).
PAIRS = {
    "astronaut": ("hopper-portrait", "painted-hopper"),
    "grace-hopper": ("astronaut-poster", "comic-astronaut"),
}
TILE_PX = 256


def _tile(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((TILE_PX, TILE_PX))
    tile = Image.new("RGB", (TILE_PX, TILE_PX), (255, 255, 255))
    tile.paste(image, ((TILE_PX - image.width) // 2, (TILE_PX - image.height) // 2))
    return tile


def _refused_tile(reason: str) -> Image.Image:
    tile = Image.new("RGB", (TILE_PX, TILE_PX), (225, 225, 225))
    ImageDraw.Draw(tile).multiline_text((12, TILE_PX // 2 - 12), f"refused:\n{reason}", fill=(60, 60, 60))
    return tile


def run_demo(out_dir: Path, echo=print) -> list[Path]:
    from facefuse import stack

    settings = get_settings()
    store = TemplateStore(settings.templates_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    echo("starting Triton and the gateway ...")
    with stack.in_process(settings, gateway_port=0) as (triton, gateway, key), \
            FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=key) as client:
        echo(f"Triton ready on {triton.grpc_url}, gateway on 127.0.0.1:{gateway.port}")
        rows, written = _fuse_all(client, store, out_dir, echo)
    strip = out_dir / "strip.png"
    Image.fromarray(np.vstack(rows)).save(strip)
    echo(f"wrote {strip} (photo | template | fuse/profile {' | '.join(f'{f:g}/{p:g}' for f, p in DEGREE_SETTINGS)})")
    return [*written, strip]


def _fuse_all(client: FacefuseClient, store: TemplateStore, out_dir: Path, echo) -> tuple[list, list[Path]]:
    rows, written = [], []
    for photo_name, photo in PHOTOS.items():
        for template_id in PAIRS[photo_name]:
            template_png = io.BytesIO()
            Image.fromarray(store.load(template_id).image).save(template_png, format="PNG")
            row = [_tile(photo()), _tile(template_png.getvalue())]
            for fuse_degree, profile_degree in DEGREE_SETTINGS:
                try:
                    poster = client.fuse(photo(), template_id, fuse_degree=fuse_degree, profile_degree=profile_degree).image
                except InvalidPhotoError as error:
                    if error.reason != "FUSION_QUALITY_LOW":
                        raise
                    row.append(_refused_tile(error.reason))
                    echo(f"refused {photo_name} into {template_id} at {fuse_degree:g}/{profile_degree:g}: {error.reason}")
                    continue
                path = out_dir / f"{photo_name}_into_{template_id}_f{fuse_degree:g}_p{profile_degree:g}.jpg"
                path.write_bytes(poster)
                written.append(path)
                row.append(_tile(poster))
                echo(f"wrote {path}")
            rows.append(np.hstack([np.asarray(t) for t in row]))
    return rows, written
