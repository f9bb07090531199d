"""`facefuse-client`: fuse and beautify photos, list templates, through the gateway.

argparse (standard library) keeps the client's dependencies to gRPC and protobuf.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from facefuse_client.client import BEAUTY_FIELDS, DEFAULT_TIMEOUT_S, BeautifiedPhoto, FacefuseClient, Poster
from facefuse_client.errors import FacefuseError

DEFAULT_TARGET = "127.0.0.1:50051"


def _client(args) -> FacefuseClient:
    return FacefuseClient(args.target, api_key=args.api_key, token=args.token, timeout_s=args.timeout_s)


def fuse_files(client: FacefuseClient, photos: list[Path], template: str, output: Path,
               faces: list[int] | None = None, **options) -> Poster:
    """Photo files into a template, the poster written to `output` in the format its
    suffix names (.png, .webp, else JPEG). One photo takes `faces[0]` (default 0);
    several map onto `faces` (default 0, 1, ...). ValueError when the counts differ."""
    faces = faces or list(range(len(photos)))
    if len(faces) != len(photos):
        raise ValueError(f"give one --face per photo ({len(photos)} photos, {len(faces)} --face)")
    options["output_format"] = {".png": "png", ".webp": "webp"}.get(output.suffix.lower(), "jpeg")
    if len(photos) == 1:
        poster = client.fuse(photos[0].read_bytes(), template, face_index=faces[0], **options)
    else:
        poster = client.fuse_faces(template, [(p.read_bytes(), i) for p, i in zip(photos, faces)], **options)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(poster.image)
    return poster


def output_format(output: Path) -> str:
    return {".png": "png", ".webp": "webp"}.get(output.suffix.lower(), "jpeg")


def beautify_file(client: FacefuseClient, photo: Path, output: Path, face_index: int | None = None,
                  add_label: bool = True, **beauty) -> BeautifiedPhoto:
    """A photo file beautified (every face, or face_index), written to `output` in the
    format its suffix names (.png, .webp, else JPEG)."""
    result = client.beautify(photo.read_bytes(), face_index=face_index, add_label=add_label,
                             output_format=output_format(output), **beauty)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(result.image)
    return result


def describe(poster: Poster, output) -> str:
    """One line for the user: where the poster went, the poster's and the photo's scores and
    warnings."""
    def verdict(quality: float, warnings: tuple[str, ...]) -> str:
        return f"{quality:.2f}" + (f", warnings: {', '.join(warnings)}" if warnings else "")

    return (f"wrote {output} (quality {verdict(poster.quality, poster.warnings)}; "
            f"photo {verdict(poster.photo_quality, poster.photo_warnings)})")


def cmd_fuse(args) -> int:
    with _client(args) as client:
        try:
            poster = fuse_files(client, [Path(p) for p in args.photos], args.template, Path(args.output), args.face,
                                fuse_degree=args.fuse_degree, profile_degree=args.profile_degree,
                                add_label=not args.no_label, **{f: getattr(args, f) for f in BEAUTY_FIELDS})
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
    print(describe(poster, args.output))
    return 0


def cmd_beautify(args) -> int:
    with _client(args) as client:
        beautify_file(client, Path(args.photo), Path(args.output), args.face, not args.no_label,
                      **{f: getattr(args, f) for f in BEAUTY_FIELDS})
    print(f"wrote {args.output}")
    return 0


def add_beauty_arguments(command: argparse.ArgumentParser) -> None:
    for field in BEAUTY_FIELDS:
        command.add_argument(f"--{field.replace('_', '-')}", dest=field, type=float, help="0..100 (default 0: off)")


def cmd_templates(args) -> int:
    with _client(args) as client:
        for t in client.list_templates():
            print(f"{t.template_id}\tv{t.version}\t{t.face_count} face(s)\t{t.width}x{t.height}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facefuse-client", description="Call the facefuse gateway.")
    p.add_argument("--target", default=os.environ.get("FACEFUSE_GATEWAY", DEFAULT_TARGET), help="gateway host:port")
    p.add_argument("--api-key", default=os.environ.get("FACEFUSE_API_KEY"), help="API key (or FACEFUSE_API_KEY)")
    p.add_argument("--token", default=os.environ.get("FACEFUSE_TOKEN"), help="JWT bearer token (or FACEFUSE_TOKEN)")
    p.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S, help="deadline per call")
    sub = p.add_subparsers(dest="command", required=True)
    fuse = sub.add_parser("fuse", help="fuse photo(s) into a template")
    fuse.add_argument("photos", nargs="+", help="photo file(s); several map onto several template faces")
    fuse.add_argument("--template", required=True)
    fuse.add_argument("-o", "--output", required=True, help="poster file (.jpg, .png, .webp)")
    fuse.add_argument("--fuse-degree", type=float, help="0..100 appearance (default 80)")
    fuse.add_argument("--profile-degree", type=float, help="0..100 face shape (default 50)")
    fuse.add_argument("--face", type=int, action="append", help="template face per photo (0 = leftmost)")
    fuse.add_argument("--no-label", action="store_true", help="leave out the AI-synthesized label")
    add_beauty_arguments(fuse)
    fuse.set_defaults(run=cmd_fuse)
    beautify = sub.add_parser("beautify", help="smooth, brighten, slim and enlarge eyes in a photo")
    beautify.add_argument("photo", help="photo file")
    beautify.add_argument("-o", "--output", required=True, help="result file (.jpg, .png, .webp)")
    beautify.add_argument("--face", type=int, help="only this face (0 = leftmost; default every face)")
    beautify.add_argument("--no-label", action="store_true", help="leave out the AI-synthesized label")
    add_beauty_arguments(beautify)
    beautify.set_defaults(run=cmd_beautify)
    templates = sub.add_parser("templates", help="list templates")
    templates.set_defaults(run=cmd_templates)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except FacefuseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
