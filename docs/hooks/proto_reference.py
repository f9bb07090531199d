"""The API reference, generated from the .proto's messages, fields and comments.

protoc (from grpcio-tools) compiles the proto into a descriptor set with source info,
which keeps every comment with the element it belongs to; this module renders that as
Markdown. Nothing is copied by hand, so the page follows the proto.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "client" / "src"
PROTO = "facefuse_client/v1/facefuse.proto"

# FieldDescriptorProto / FileDescriptorProto field numbers, the keys of source-info paths.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE, FILE_SYNTAX = 4, 5, 6, 12
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2
TYPES = {v: k[len("TYPE_"):].lower() for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()}


def descriptor(proto: str = PROTO, proto_root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorProto:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        code = protoc.main(["protoc", f"-I{proto_root}", "--include_source_info", f"--descriptor_set_out={out}", proto])
        if code != 0:
            raise RuntimeError(f"protoc could not compile {proto_root / proto} (exit {code})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Each element's comments (detached ones above it too), keyed by source-info path;
    the file's own comment, written above `syntax`, under ()."""
    found = {}
    for location in file.source_code_info.location:
        parts = [*location.leading_detached_comments, location.leading_comments, location.trailing_comments]
        text = "\n\n".join(_clean(part) for part in parts if _clean(part))
        path = tuple(location.path)
        found[() if path == (FILE_SYNTAX,) else path] = text
    return found


def _clean(comment: str) -> str:
    """Comment lines as Markdown paragraphs; decoration such as `---- Title ----` kept as text."""
    paragraphs = [" ".join(line.strip().strip("-").strip() for line in block.splitlines())
                  for block in comment.strip().split("\n\n")]
    return "\n\n".join(p.strip() for p in paragraphs if p.strip())


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return name.lower().replace(".", "-")


def _type(field: descriptor_pb2.FieldDescriptorProto, package: str) -> str:
    if field.type_name:
        name = field.type_name.removeprefix(f".{package}.")
        if name.startswith("."):  # another package's type
            return f"`{name[1:]}`"
        return f"[`{name}`](#{_anchor(name)})"
    return f"`{TYPES[field.type]}`"


def _label(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.label == field.LABEL_REPEATED:
        return "repeated"
    return "optional" if field.proto3_optional else ""


def render(file: descriptor_pb2.FileDescriptorProto | None = None) -> str:
    file = file or descriptor()
    comments, package, out = _comments(file), file.package, []
    if comments.get(()):
        out += [comments[()], ""]
    out += ["## Services", ""]
    for s, service in enumerate(file.service):
        out += [f"### {service.name} {{#{_anchor(service.name)}}}", "", f"`{package}.{service.name}`", ""]
        if comments.get((FILE_SERVICE, s)):
            out += [comments[(FILE_SERVICE, s)], ""]
        out += ["| RPC | request | response | description |", "|---|---|---|---|"]
        for m, method in enumerate(service.method):
            request = method.input_type.removeprefix(f".{package}.")
            response = method.output_type.removeprefix(f".{package}.")
            stream = "stream " if method.server_streaming else ""
            note = _one_line(comments.get((FILE_SERVICE, s, SERVICE_METHOD, m), ""))
            out.append(f"| `{method.name}` | [`{request}`](#{_anchor(request)}) | {stream}[`{response}`](#{_anchor(response)}) | {note} |")
        out.append("")
    out += ["## Messages", ""]
    for i, message in enumerate(file.message_type):
        out += _message(message, (FILE_MESSAGE, i), message.name, comments, package)
    out += ["## Enums", ""]
    for i, enum in enumerate(file.enum_type):
        out += _enum(enum, (FILE_ENUM, i), enum.name, comments)
    return "\n".join(out)


def _message(message, path, name, comments, package) -> list[str]:
    out = [f"### {name} {{#{_anchor(name)}}}", ""]
    if comments.get(path):
        out += [comments[path], ""]
    if message.field:
        out += ["| field | number | type | label | description |", "|---|---|---|---|---|"]
        for f, field in enumerate(message.field):
            note = _one_line(comments.get(path + (MESSAGE_FIELD, f), ""))
            out.append(f"| `{field.name}` | {field.number} | {_type(field, package)} | {_label(field)} | {note} |")
    else:
        out.append("No fields.")
    out.append("")
    for n, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            out += _message(nested, path + (MESSAGE_NESTED, n), f"{name}.{nested.name}", comments, package)
    for e, enum in enumerate(message.enum_type):
        out += _enum(enum, path + (MESSAGE_ENUM, e), f"{name}.{enum.name}", comments)
    return out


def _enum(enum, path, name, comments) -> list[str]:
    out = [f"### {name} {{#{_anchor(name)}}}", ""]
    if comments.get(path):
        out += [comments[path], ""]
    out += ["| value | number | description |", "|---|---|---|"]
    for v, value in enumerate(enum.value):
        out.append(f"| `{value.name}` | {value.number} | {_one_line(comments.get(path + (ENUM_VALUE, v), ''))} |")
    return out + [""]
