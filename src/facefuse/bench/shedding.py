"""`facefuse bench shedding`: goodput and rejection latency when offered more than the
stack can serve.

Starts Triton and the gateway (its own process), measures the sustainable rate of Fuse
calls with closed loops (posters answered within the deadline per second; the best of
2, 4, ... up to `--concurrency` callers, since too many callers make calls miss the
deadline and understate the rate), then offers `--overload` times that rate
as an open loop (calls start on schedule whether or not earlier ones have answered,
like a campaign's users) with a per-call deadline. Reports goodput (posters that came
back in time, per second) against the sustainable rate, and how fast refusals
(OVERLOADED, DEADLINE_EXCEEDED) came back. Figures go to shedding.json / .md.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

from facefuse import samples

TEMPLATE = "hopper-portrait"


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def _call(stub, pb, photo: bytes, key: str, timeout_s: float) -> tuple[str, float]:
    from facefuse_client.errors import REASON_KEY

    started = time.perf_counter()
    try:
        await stub.Fuse(pb.FuseRequest(photo=photo, template_id=TEMPLATE), metadata=(("x-api-key", key),),
                        timeout=timeout_s)
        outcome = "OK"
    except grpc.aio.AioRpcError as error:
        outcome = dict(error.trailing_metadata() or ()).get(REASON_KEY) or error.code().name
    return outcome, (time.perf_counter() - started) * 1000


async def _closed_loop(stub, pb, photos, key, concurrency: int, duration_s: float, timeout_s: float) -> float:
    """Posters per second answered within the deadline, `concurrency` callers back to back."""
    done = 0
    stop_at = time.monotonic() + duration_s

    async def worker(i: int):
        nonlocal done
        while time.monotonic() < stop_at:
            outcome, _ = await _call(stub, pb, photos[i % len(photos)], key, timeout_s)
            done += outcome == "OK"

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.monotonic() - started)


async def _open_loop(stub, pb, photos, key, rate_per_s: float, duration_s: float, timeout_s: float):
    tasks = []
    started = time.monotonic()
    n = 0
    while (due := started + n / rate_per_s) < started + duration_s:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.ensure_future(_call(stub, pb, photos[n % len(photos)], key, timeout_s)))
        n += 1
    return await asyncio.gather(*tasks), time.monotonic() - started


async def _measure(port: int, key: str, concurrency: int, overload: float, duration_s: float, timeout_s: float) -> dict:
    from facefuse_client.client import MAX_MESSAGE_BYTES
    from facefuse_client.v1 import facefuse_pb2 as pb
    from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

    photos = [samples.astronaut(), samples.grace_hopper()]
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = pb_grpc.FaceFusionStub(channel)
        await _closed_loop(stub, pb, photos, key, 2, 5, 60)  # warm-up
        levels = sorted({min(c, concurrency) for c in (2, 4, 8, 16, 32, 64) if c <= concurrency} | {concurrency})
        per_level = {c: await _closed_loop(stub, pb, photos, key, c, duration_s / 2, timeout_s) for c in levels}
        best = max(per_level, key=per_level.get)
        sustainable = per_level[best]
        offered = sustainable * overload
        load_before = os.getloadavg()[0]
        results, elapsed = await _open_loop(stub, pb, photos, key, offered, duration_s, timeout_s)
        load_after = os.getloadavg()[0]
    outcomes = Counter(o for o, _ in results)
    ok_ms = [ms for o, ms in results if o == "OK"]
    refused = {reason: [ms for o, ms in results if o == reason] for reason in outcomes if reason != "OK"}
    goodput = outcomes["OK"] / elapsed
    refusals_ms = [ms for o, ms in results if o != "OK"]
    return {
        "concurrency_for_sustainable": best, "sustainable_posters_per_s": round(sustainable, 2),
        "closed_loop_posters_per_s": {str(c): round(r, 2) for c, r in per_level.items()},
        "overload": overload, "offered_calls_per_s": round(offered, 2), "deadline_s": timeout_s,
        "calls": len(results), "seconds": round(elapsed, 1),
        "goodput_posters_per_s": round(goodput, 2), "goodput_ratio": round(goodput / sustainable, 3),
        "ok_p50_ms": _percentile(ok_ms, 50), "ok_p99_ms": _percentile(ok_ms, 99),
        "outcomes": dict(outcomes.most_common()),
        "refusal_ms": {r: {"p50": _percentile(v, 50), "p99": _percentile(v, 99)} for r, v in refused.items()},
        # Every call that did not get a poster, whatever its reason.
        "rejection_p50_ms": _percentile(refusals_ms, 50), "rejection_p99_ms": _percentile(refusals_ms, 99),
        # The machine is shared (1-minute load average, before and after the overload phase).
        "load_average": [round(load_before, 2), round(load_after, 2)], "cpus": os.cpu_count(),
    }


def run_shedding_bench(concurrency: int, overload: float, duration_s: float, timeout_s: float, out_dir: Path,
                       echo=print) -> dict:
    from facefuse import stack

    with stack.gateway_process() as (triton, port, key):
        result = asyncio.run(_measure(port, key, concurrency, overload, duration_s, timeout_s))
    echo(f"sustainable {result['sustainable_posters_per_s']} posters/s (best closed loop: "
         f"{result['concurrency_for_sustainable']} callers, of {result['closed_loop_posters_per_s']}); "
         f"offered {result['offered_calls_per_s']} calls/s with a {timeout_s:g} s deadline")
    echo(f"goodput {result['goodput_posters_per_s']} posters/s = {result['goodput_ratio']:.0%} of sustainable; "
         f"outcomes {result['outcomes']}; refusals (ms) {result['refusal_ms']}")
    echo(f"rejections p50 {result['rejection_p50_ms']} ms, p99 {result['rejection_p99_ms']} ms; "
         f"load average {result['load_average'][0]} -> {result['load_average'][1]} on {result['cpus']} CPUs")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "shedding.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {r} | {result['outcomes'][r]} | {v['p50']} | {v['p99']} |" for r, v in result["refusal_ms"].items())
    (out_dir / "shedding.md").write_text(
        "# Shedding under overload\n\n"
        f"Sustainable: {result['sustainable_posters_per_s']} posters/s (the best closed loop, "
        f"{result['concurrency_for_sustainable']} callers, {duration_s / 2:g} s each; per callers: "
        f"{result['closed_loop_posters_per_s']}). Offered: {result['offered_calls_per_s']} Fuse calls/s ({overload:g}x), open loop, "
        f"{result['calls']} calls over {result['seconds']} s, deadline {timeout_s:g} s.\n\n"
        f"**Goodput: {result['goodput_posters_per_s']} posters/s, {result['goodput_ratio']:.0%} of sustainable** "
        f"(answered in time: p50 {result['ok_p50_ms']} ms, p99 {result['ok_p99_ms']} ms).\n\n"
        f"Rejections (every call without a poster): p50 {result['rejection_p50_ms']} ms, "
        f"p99 {result['rejection_p99_ms']} ms. Load average {result['load_average'][0]} -> "
        f"{result['load_average'][1]} on {result['cpus']} CPUs.\n\n"
        "| refusal | calls | p50 ms | p99 ms |\n|---|---|---|---|\n" + rows + "\n"
    )
    return result
