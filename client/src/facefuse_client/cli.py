"""`facefuse-client`: fuse photos and list templates through the gateway.

argparse (standard library) keeps the client's dependencies to gRPC and protobuf.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from facefuse_client.client import DEFAULT_TIMEOUT_S, FacefuseClient
from facefuse_client.errors import FacefuseError

DEFAULT_TARGET = "127.0.0.1:50051"


def _client(args) -> FacefuseClient:
    return FacefuseClient(args.target, api_key=args.api_key, token=args.token, timeout_s=args.timeout_s)


def cmd_fuse(args) -> int:
    photos = [Path(p).read_bytes() for p in args.photos]
    fmt = {".png": "png", ".webp": "webp"}.get(Path(args.output).suffix.lower(), "jpeg")
    options = {"fuse_degree": args.fuse_degree, "profile_degree": args.profile_degree,
               "add_label": not args.no_label, "output_format": fmt}
    with _client(args) as client:
        if len(photos) == 1:
            poster = client.fuse(photos[0], args.template, face_index=(args.face or [0])[0], **options)
        else:
            faces = args.face or list(range(len(photos)))
            if len(faces) != len(photos):
                print(f"give one --face per photo ({len(photos)} photos, {len(faces)} --face)", file=sys.stderr)
                return 2
            poster = client.fuse_faces(args.template, zip(photos, faces), **options)
    Path(args.output).write_bytes(poster.image)
    print(f"wrote {args.output}")
    return 0


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
    fuse.set_defaults(run=cmd_fuse)
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
