"""`facefuse bench fuzz`: thousands of hostile and mutated inputs against the decode
stage (in this process) and against a real gateway + Triton (requests with mutated
photos and random fields, and raw message bodies). Counts every outcome by reason; an
INTERNAL, UNKNOWN or an exception that is not a typed error is a finding. Figures go
to fuzz.json / fuzz.md; nothing is asserted here (tests/unit/test_decode_fuzz.py and
tests/integration/gateway/test_gateway_hardening.py assert the same on fewer inputs).
"""

from __future__ import annotations

import io
import json
import random
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from PIL import Image

from facefuse import samples
from facefuse.errors import FacefuseError
from facefuse.fuzz import hostile_images, mpo, mutate
from facefuse.stages.decode import DecodeParams, decode

FINDINGS = ("INTERNAL", "UNKNOWN", "CRASH")
TEMPLATE = "hopper-portrait"


def _seeds() -> dict[str, bytes]:
    photo = Image.open(io.BytesIO(samples.astronaut())).convert("RGB")
    out = {"mpo": mpo(photo.resize((192, 192)))}
    for fmt in ("JPEG", "PNG", "WEBP", "BMP"):
        buffer = io.BytesIO()
        photo.resize((192, 192)).save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    return out


def decode_inputs(count: int, seed: int = 0):
    """(kind, bytes): the hostile set once, then mutations and random bytes."""
    photo = Image.open(io.BytesIO(samples.astronaut())).convert("RGB")
    yield from (("hostile:" + name, data) for name, data in hostile_images(photo).items())
    seeds = _seeds()
    rng = random.Random(seed)
    for i in range(count):
        if i % 10 == 9:
            yield "random", rng.randbytes(rng.randint(0, 2048))
        else:
            fmt = rng.choice(sorted(seeds))
            yield f"mutated:{fmt}", mutate(seeds[fmt], rng.getrandbits(32))


def fuzz_decode(count: int) -> dict:
    params = DecodeParams(detector_input_px=320)
    warnings.simplefilter("ignore")  # Pillow warns about each malformed file it still reads
    outcomes: Counter = Counter()
    findings = []
    started = time.perf_counter()
    total = 0
    for kind, data in decode_inputs(count):
        total += 1
        try:
            decode(data, params)
            outcomes["decoded"] += 1
        except FacefuseError as error:
            outcomes[error.reason.value] += 1
            if error.reason.value in FINDINGS:
                findings.append(f"{kind}: {error}")
        except Exception as exc:  # noqa: BLE001 - exactly what this looks for
            outcomes["CRASH"] += 1
            findings.append(f"{kind}: {type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    return {"inputs": total, "seconds": round(elapsed, 1), "per_input_ms": round(elapsed / total * 1000, 2),
            "outcomes": dict(outcomes.most_common()), "findings": findings[:20]}


def gateway_inputs(count: int, seed: int = 1):
    """(kind, method, body) for the gateway."""
    from facefuse_client.v1 import facefuse_pb2 as pb

    seeds = _seeds()
    rng = random.Random(seed)
    text = lambda n: "".join(chr(rng.choice((rng.randint(32, 126), rng.randint(0, 0x2FFF)))) for _ in range(n))  # noqa: E731
    for i in range(count):
        if i % 3 == 2:
            yield "raw body", rng.choice(("Fuse", "FuseMany", "ListTemplates")), rng.randbytes(rng.randint(0, 512))
            continue
        fmt = rng.choice(sorted(seeds))
        photo = mutate(seeds[fmt], rng.getrandbits(32)) if rng.random() < 0.8 else seeds[fmt]
        # Each field is odd now and then, so most requests reach the photo's decode.
        odd = lambda: rng.random() < 0.1  # noqa: E731
        options = pb.FuseOptions(
            fuse_degree=rng.choice((-1.0, 1e6, float("nan"), float("inf"))) if odd() else 50.0,
            output_format=rng.choice((4, 99, 2**31 - 1)) if odd() else rng.choice((0, 1, 2, 3)),
            output_quality=rng.choice((0, 101, -5)) if odd() else 90)
        request_id = text(rng.randint(1, 300)) if odd() else rng.choice(("", "ok-id"))
        template = text(rng.randint(0, 90)) if odd() else rng.choice((TEMPLATE, "group-six"))
        if rng.random() < 0.25:
            message = pb.FuseManyRequest(photo=photo, template_ids=[template] * rng.randint(0, 12),
                                         request_id=request_id, options=options)
            yield f"FuseMany:{fmt}", "FuseMany", message.SerializeToString()
        else:
            message = pb.FuseRequest(photo=photo, template_id=template, request_id=request_id, options=options,
                                     template_face_index=rng.choice((-1, 7)) if odd() else 0)
            yield f"Fuse:{fmt}", "Fuse", message.SerializeToString()


def fuzz_gateway(count: int, concurrency: int) -> dict:
    from facefuse_client import FacefuseClient
    from facefuse_client.errors import REASON_KEY

    from facefuse import stack

    outcomes: Counter = Counter()
    findings = []
    started = time.perf_counter()
    with stack.gateway_process() as (triton, port, key):
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20),
                                                                      ("grpc.max_receive_message_length", 256 << 20)])

        def call(item):
            kind, method, body = item
            try:
                channel.unary_unary(f"/facefuse.v1.FaceFusion/{method}")(
                    body, metadata=(("x-api-key", key),), timeout=30)
                return kind, "OK", None
            except grpc.RpcError as error:
                reason = dict(error.trailing_metadata() or ()).get(REASON_KEY)
                return kind, f"{error.code().name}/{reason or '-'}", error.details()

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for kind, outcome, details in pool.map(call, gateway_inputs(count)):
                outcomes[outcome] += 1
                if outcome != "OK" and (outcome.startswith(("INTERNAL", "UNKNOWN")) or outcome.endswith("/-")):
                    findings.append(f"{kind}: {outcome}: {(details or '')[:200]}")
        with FacefuseClient(f"127.0.0.1:{port}", api_key=key) as client:
            up_after = bool(client.fuse(samples.astronaut(), TEMPLATE).image)
        channel.close()
    elapsed = time.perf_counter() - started
    return {"inputs": count, "concurrency": concurrency, "seconds": round(elapsed, 1),
            "outcomes": dict(outcomes.most_common()), "findings": findings[:20], "server_up_after": up_after}


def run_fuzz_bench(decode_count: int, gateway_count: int, concurrency: int, out_dir: Path, echo=print) -> dict:
    echo(f"decode stage: {decode_count} generated inputs plus the hostile set ...")
    result = {"decode": fuzz_decode(decode_count)}
    echo(f"  {result['decode']['outcomes']}")
    if gateway_count:
        echo(f"gateway + Triton: {gateway_count} generated requests and raw bodies at concurrency {concurrency} ...")
        result["gateway"] = fuzz_gateway(gateway_count, concurrency)
        echo(f"  {result['gateway']['outcomes']}; serving after: {result['gateway']['server_up_after']}")
    findings = result["decode"]["findings"] + result.get("gateway", {}).get("findings", [])
    echo(f"findings (INTERNAL, UNKNOWN, untyped): {len(findings)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Fuzz run", ""]
    for part, figures in result.items():
        lines += [f"## {part}", "", f"{figures['inputs']} inputs in {figures['seconds']} s", "",
                  "| outcome | count |", "|---|---|", *[f"| {k} | {v} |" for k, v in figures["outcomes"].items()], ""]
        if "server_up_after" in figures:
            lines += [f"A real poster was fused after the run: {figures['server_up_after']}", ""]
    lines += ["## Findings", "", *([f"- {f}" for f in findings] or ["none"]), ""]
    (out_dir / "fuzz.md").write_text("\n".join(lines))
    return result
