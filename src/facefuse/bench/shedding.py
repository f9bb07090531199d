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


# ---- --no-backoff: callers that ignore retry-after, measured apart from the server ------
POLITE_CALLERS = 4
IMPOLITE_CALLERS = 32
SERVER_CPU, LOAD_CPU = 0, 1
WARM_UP_S = 3.0


async def _caller_loop(stub, pb, photos, key, timeout_s: float, stop_at: float, polite: bool, record) -> None:
    """Back to back until stop_at; a polite caller sleeps a refusal's retry-after (with
    jitter, as the SDK's retry policy does), an impolite one calls again at once."""
    import random

    from facefuse_client.errors import REASON_KEY, RETRY_AFTER_KEY

    n = 0
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        retry_after_s = None
        try:
            await stub.Fuse(pb.FuseRequest(photo=photos[n % len(photos)], template_id=TEMPLATE),
                            metadata=(("x-api-key", key),), timeout=timeout_s)
            outcome = "OK"
        except grpc.aio.AioRpcError as error:
            trailing = dict(error.trailing_metadata() or ())
            outcome = trailing.get(REASON_KEY) or error.code().name
            if RETRY_AFTER_KEY in trailing:
                retry_after_s = int(trailing[RETRY_AFTER_KEY]) / 1000
        record(outcome, (time.perf_counter() - started) * 1000)
        n += 1
        if polite and retry_after_s is not None:
            await asyncio.sleep(min(retry_after_s * (1 + 0.5 * random.random()), max(0.0, stop_at - time.monotonic())))


async def _phase(stub, pb, photos, key, callers: int, polite: bool, duration_s: float, timeout_s: float) -> dict:
    results: list[tuple[str, float]] = []
    stop_at = time.monotonic() + duration_s
    started = time.monotonic()
    await asyncio.gather(*(_caller_loop(stub, pb, photos, key, timeout_s, stop_at, polite,
                                        lambda o, ms: results.append((o, ms))) for _ in range(callers)))
    return _phase_figures(results, time.monotonic() - started, callers, polite)


# Answers the gateway gives without serving the call; the other failures (a missed
# deadline, a replica's UNAVAILABLE) are calls it admitted and lost.
REFUSALS = ("RATE_LIMITED", "OVERLOADED", "UNAUTHENTICATED", "PERMISSION_DENIED")


def _phase_figures(results: list[tuple[str, float]], elapsed: float, callers: int, polite: bool) -> dict:
    outcomes = Counter(o for o, _ in results)
    refused = {r: [ms for o, ms in results if o == r] for r in outcomes if r != "OK"}
    refusals_ms = [ms for o, ms in results if o in REFUSALS]
    return {
        "callers": callers, "polite": polite, "seconds": round(elapsed, 1), "calls": len(results),
        "calls_per_s": round(len(results) / elapsed, 1),
        "goodput_posters_per_s": round(outcomes["OK"] / elapsed, 2),
        "ok_p50_ms": _percentile([ms for o, ms in results if o == "OK"], 50),
        "ok_p99_ms": _percentile([ms for o, ms in results if o == "OK"], 99),
        "outcomes": dict(outcomes.most_common()),
        "refusal_ms": {r: {"p50": _percentile(v, 50), "p99": _percentile(v, 99)} for r, v in refused.items()},
        # Refusals only (REFUSALS); refusal_ms has every failure by reason.
        "refusal_p50_ms": _percentile(refusals_ms, 50), "refusal_p99_ms": _percentile(refusals_ms, 99),
        "admitted_and_lost": sum(n for r, n in outcomes.items() if r != "OK" and r not in REFUSALS),
    }


async def _load(port: int, key: str, duration_s: float, timeout_s: float) -> dict:
    from facefuse_client.client import MAX_MESSAGE_BYTES
    from facefuse_client.v1 import facefuse_pb2 as pb
    from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

    photos = [samples.astronaut(), samples.grace_hopper()]
    # Plain channel options, no retry policy: every attempt is the bench's own and counted.
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.enable_retries", 0)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = pb_grpc.FaceFusionStub(channel)
        await _phase(stub, pb, photos, key, 2, True, WARM_UP_S, 60)
        polite = await _phase(stub, pb, photos, key, POLITE_CALLERS, True, duration_s, timeout_s)
        impolite = await _phase(stub, pb, photos, key, IMPOLITE_CALLERS, False, duration_s, timeout_s)
    return {"polite": polite, "impolite": impolite, "load_cpus": sorted(os.sched_getaffinity(0)),
            "photo_bytes": [len(p) for p in photos]}


def _load_main() -> None:
    """The load generator's process (`taskset -c LOAD_CPU python -m facefuse.bench.shedding`):
    its job on stdin (the API key never on a command line), its figures on stdout."""
    import sys

    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_load(job["port"], job["key"], job["duration_s"], job["timeout_s"]))))


def _variant(refuse_from_metadata: bool, duration_s: float, timeout_s: float) -> dict:
    """One stack, its server pinned to SERVER_CPU, measured by a load process on LOAD_CPU."""
    import subprocess
    import sys

    from facefuse import stack

    mine = os.sched_getaffinity(0)
    previous = os.environ.get("FACEFUSE_GATEWAY_REFUSE_FROM_METADATA")
    os.environ["FACEFUSE_GATEWAY_REFUSE_FROM_METADATA"] = "true" if refuse_from_metadata else "false"
    os.sched_setaffinity(0, {SERVER_CPU})  # tritonserver, its stubs and the gateway inherit it
    try:
        with stack.gateway_process() as (triton, port, key):
            server_cpus = sorted(os.sched_getaffinity(triton.process.pid))
            job = json.dumps({"port": port, "key": key, "duration_s": duration_s, "timeout_s": timeout_s})
            load = subprocess.run(["taskset", "-c", str(LOAD_CPU), sys.executable, "-m", "facefuse.bench.shedding"],
                                  input=job, capture_output=True, text=True, check=False, timeout=duration_s * 4 + 300)
            if load.returncode != 0:
                raise RuntimeError(f"the load process failed ({load.returncode}): {load.stderr[-2000:]}")
            result = json.loads(load.stdout)
    finally:
        os.sched_setaffinity(0, mine)
        if previous is None:
            os.environ.pop("FACEFUSE_GATEWAY_REFUSE_FROM_METADATA", None)
        else:
            os.environ["FACEFUSE_GATEWAY_REFUSE_FROM_METADATA"] = previous
    polite, impolite = result["polite"]["goodput_posters_per_s"], result["impolite"]["goodput_posters_per_s"]
    return {**result, "server_cpus": server_cpus, "refuse_from_metadata": refuse_from_metadata,
            "impolite_over_polite": round(impolite / polite, 3) if polite else None}


def run_no_backoff_bench(duration_s: float, timeout_s: float, out_dir: Path, compare: bool, echo=print) -> dict:
    """32 callers that retry at once against 4 that honour retry-after, the load generator
    on its own CPU. compare: the same against a gateway that refuses only after reading
    the request (FACEFUSE_GATEWAY_REFUSE_FROM_METADATA=false), for a before/after."""
    if len(os.sched_getaffinity(0)) < 2 or not {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0):
        raise RuntimeError(f"--no-backoff pins the server to CPU {SERVER_CPU} and the load to CPU {LOAD_CPU}; "
                           f"this process may use CPUs {sorted(os.sched_getaffinity(0))}")
    variants = {"from_metadata": _variant(True, duration_s, timeout_s)}
    if compare:
        variants["after_reading"] = _variant(False, duration_s, timeout_s)
    result = {"deadline_s": timeout_s, "phase_s": duration_s, "cpus": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 2), "variants": variants,
              "targets": {"impolite_over_polite_at_least": 0.8, "refusal_p99_ms_under": 20}}
    rows = []
    for name, v in variants.items():
        p, i = v["polite"], v["impolite"]
        echo(f"{name}: {POLITE_CALLERS} polite {p['goodput_posters_per_s']} posters/s; {IMPOLITE_CALLERS} impolite "
             f"{i['goodput_posters_per_s']} posters/s ({v['impolite_over_polite']:.0%}) at {i['calls_per_s']} calls/s; "
             f"refusals p50 {i['refusal_p50_ms']} ms, p99 {i['refusal_p99_ms']} ms; outcomes {i['outcomes']}")
        rows.append(f"| {name} | {p['goodput_posters_per_s']} | {i['goodput_posters_per_s']} | "
                    f"{v['impolite_over_polite']:.0%} | {i['calls_per_s']} | {i['refusal_p50_ms']} | "
                    f"{i['refusal_p99_ms']} | {v['server_cpus']} / {v['load_cpus']} |")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "shedding-no-backoff.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "shedding-no-backoff.md").write_text(
        "# Callers that ignore retry-after\n\n"
        f"{POLITE_CALLERS} polite callers (they sleep each refusal's retry-after, jittered), then "
        f"{IMPOLITE_CALLERS} impolite ones (they call again at once), {duration_s:g} s each, Fuse with a "
        f"{timeout_s:g} s deadline. Server (tritonserver, its stubs, the gateway) pinned to CPU {SERVER_CPU}, "
        f"load generator to CPU {LOAD_CPU} (taskset). Load average {result['load_average_1m']} on "
        f"{result['cpus']} CPUs (the machine is shared). Targets: impolite goodput at least 80% of polite, "
        "refusal p99 under 20 ms.\n\n"
        "| gateway refuses | polite posters/s | impolite posters/s | ratio | impolite calls/s | refusal p50 ms | "
        "refusal p99 ms | CPUs server / load |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    return result


if __name__ == "__main__":
    _load_main()
