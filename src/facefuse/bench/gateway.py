"""`facefuse bench gateway`: what the gateway costs, measured against Triton directly.

In one run: tritonserver, the gateway in its own process (`facefuse gateway run`), and
an asyncio client.
- latency: the same Fuse call alternately direct (`face_fusion` ensemble) and through the
  gateway, one at a time; the added latency is the p50 and p99 of the paired
  differences, so drift of the machine between calls cancels out;
- throughput: posters/s at a fixed concurrency, direct and through the gateway, in
  alternating rounds.
Figures go to var/bench/gateway-bench.{json,md}; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as aioclient
from facefuse_client import AsyncFacefuseClient

from facefuse import samples
from facefuse.settings import get_settings
from facefuse.triton_client import POSTER_OUTPUT, FuseOptions, fusion_inputs, with_gateway_key

TEMPLATE = "hopper-portrait"
THROUGHPUT_ROUNDS = 3


@dataclass
class GatewayBench:
    machine: dict
    paired_calls: int
    direct_p50_ms: float
    direct_p99_ms: float
    gateway_p50_ms: float
    gateway_p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    concurrency: int
    throughput_calls: int
    direct_posters_per_s: float
    gateway_posters_per_s: float
    throughput_ratio: float


async def _paired(direct, gateway, photo: bytes, calls: int) -> tuple[list[float], list[float]]:
    direct_ms, gateway_ms = [], []
    for _ in range(calls):
        start = time.perf_counter()
        await direct.infer("face_fusion", fusion_inputs(photo, TEMPLATE, 0, FuseOptions()), outputs=POSTER_OUTPUT)
        direct_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        await gateway.fuse(photo, TEMPLATE)
        gateway_ms.append((time.perf_counter() - start) * 1000)
    return direct_ms, gateway_ms


async def _throughput(call, concurrency: int, calls: int) -> float:
    remaining = calls

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return calls / (time.perf_counter() - start)


async def _measure(triton, gateway_port: int, key: str, paired_calls: int, concurrency: int, calls: int) -> GatewayBench:
    photo = samples.astronaut()
    direct = with_gateway_key(aioclient.InferenceServerClient(triton.grpc_url), triton.gateway_key)
    gateway = AsyncFacefuseClient(f"127.0.0.1:{gateway_port}", api_key=key)
    try:
        await _paired(direct, gateway, photo, 5)  # warm both paths
        direct_ms, gateway_ms = await _paired(direct, gateway, photo, paired_calls)
        added = np.asarray(gateway_ms) - np.asarray(direct_ms)
        # Alternating rounds, so the machine's drift does not favour either path.
        direct_rates, gateway_rates = [], []
        for _ in range(THROUGHPUT_ROUNDS):
            direct_rates.append(await _throughput(
                lambda: direct.infer("face_fusion", fusion_inputs(photo, TEMPLATE, 0, FuseOptions()), outputs=POSTER_OUTPUT),
                concurrency, calls))
            gateway_rates.append(await _throughput(lambda: gateway.fuse(photo, TEMPLATE), concurrency, calls))
        direct_rate, gateway_rate = float(np.mean(direct_rates)), float(np.mean(gateway_rates))
    finally:
        await direct.close()
        await gateway.close()
    p = lambda values, q: round(float(np.percentile(values, q)), 2)  # noqa: E731
    return GatewayBench(
        machine={"cpu_count": os.cpu_count()}, paired_calls=paired_calls,
        direct_p50_ms=p(direct_ms, 50), direct_p99_ms=p(direct_ms, 99),
        gateway_p50_ms=p(gateway_ms, 50), gateway_p99_ms=p(gateway_ms, 99),
        added_p50_ms=p(added, 50), added_p99_ms=p(added, 99),
        concurrency=concurrency, throughput_calls=calls,
        direct_posters_per_s=round(direct_rate, 2), gateway_posters_per_s=round(gateway_rate, 2),
        throughput_ratio=round(gateway_rate / direct_rate, 3),
    )


def run_gateway_bench(paired_calls: int, concurrency: int, calls: int, out_dir: Path, echo=print) -> GatewayBench:
    from facefuse import stack

    with stack.gateway_process(get_settings()) as (triton, port, key):
        result = asyncio.run(_measure(triton, port, key, paired_calls, concurrency, calls))
    echo(f"latency added by the gateway: p50 {result.added_p50_ms} ms, p99 {result.added_p99_ms} ms "
         f"(direct p50 {result.direct_p50_ms} ms)")
    echo(f"throughput at concurrency {concurrency}: direct {result.direct_posters_per_s}, "
         f"gateway {result.gateway_posters_per_s} posters/s (ratio {result.throughput_ratio})")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gateway-bench.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    (out_dir / "gateway-bench.md").write_text(
        "# Gateway benchmark\n\n"
        f"{result.paired_calls} Fuse calls alternately direct and through the gateway, one at a time; "
        f"then {THROUGHPUT_ROUNDS} alternating rounds of {result.throughput_calls} calls each at concurrency "
        f"{result.concurrency} (mean of the rounds). "
        f"{result.machine['cpu_count']} cores.\n\n"
        "| | p50 ms | p99 ms | posters/s |\n|---|---|---|---|\n"
        f"| direct to Triton | {result.direct_p50_ms} | {result.direct_p99_ms} | {result.direct_posters_per_s} |\n"
        f"| through the gateway | {result.gateway_p50_ms} | {result.gateway_p99_ms} | {result.gateway_posters_per_s} |\n"
        f"| added (paired differences) | {result.added_p50_ms} | {result.added_p99_ms} | ratio {result.throughput_ratio} |\n"
    )
    return result
