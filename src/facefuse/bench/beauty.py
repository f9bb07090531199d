"""Beauty's cost, measured inside `facefuse bench photo --beauty V` on its Triton.

At the bench's highest concurrency, blocks of posters with beauty off and with all four
effects at V alternate (ABBA order, so the shared machine's drift falls on both
alike); then blocks of Beautify calls (face_beautify, all four at V). CPU time comes
from /proc per process (tritonserver, each model's stubs, the bench process as the
client), as the photo bench counts it; Triton's statistics give the beautify model's
own compute. Nothing is asserted: the figures go into the bench report.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc.aio as aioclient

from facefuse.triton_client import PHOTO_OUTPUT, POSTER_OUTPUT, FuseOptions, beautify_inputs, fusion_inputs, with_gateway_key
from facefuse.vision.beauty import BeautyOptions

CLIENT = "client (bench process)"


@dataclass
class BeautyCost:
    value: float
    concurrency: int
    calls_per_block: int
    rounds: int
    # CPU ms per poster by process, and "total", for posters with beauty off and on.
    poster_cpu_ms: dict = field(default_factory=dict)
    # on / off - 1, of the totals.
    poster_increase: float = 0.0
    # The beautify model's compute per poster from Triton's statistics (ms), off and on.
    beautify_compute_ms: dict = field(default_factory=dict)
    # Beautify calls (all four at `value`): CPU ms per call by process and total, latency.
    beautify_call_cpu_ms: dict = field(default_factory=dict)
    beautify_call_p50_ms: float = 0.0
    posters_per_s: dict = field(default_factory=dict)


async def _drive(triton, model: str, inputs, outputs, concurrency: int, calls: int) -> list[float]:
    client = with_gateway_key(aioclient.InferenceServerClient(triton.grpc_url), triton.gateway_key)
    latencies: list[float] = []
    remaining = calls

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await client.infer(model, inputs, outputs=outputs)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    await client.close()
    return latencies


def _beautify_compute_ns(client) -> tuple[int, int]:
    (model,) = client.get_inference_statistics("beautify", as_json=True)["model_stats"]
    s = model["inference_stats"]
    requests = int(s.get("success", {}).get("count", 0))
    return requests, sum(int(s.get(k, {}).get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output"))


def measure_beauty_cost(triton, client, photo: bytes, template: str, value: float, concurrency: int, calls: int,
                        rounds: int, echo=print) -> BeautyCost:
    from facefuse.bench.photo import _server_cpu_ms

    beauty = BeautyOptions.all_at(value)
    plans = {
        "off": ("face_fusion", fusion_inputs(photo, template, 0, FuseOptions()), POSTER_OUTPUT),
        "on": ("face_fusion", fusion_inputs(photo, template, 0, FuseOptions(beauty=beauty)), POSTER_OUTPUT),
        "beautify": ("face_beautify", beautify_inputs(photo, beauty), PHOTO_OUTPUT),
    }
    for model, inputs, outputs in plans.values():  # warm every path
        asyncio.run(_drive(triton, model, inputs, outputs, concurrency, concurrency * 2))
    cpu = {name: {} for name in plans}
    latencies: dict[str, list[float]] = {name: [] for name in plans}
    seconds = dict.fromkeys(plans, 0.0)
    compute = {name: [0, 0] for name in plans}
    for index in range(rounds):
        order = ("off", "on") if index % 4 in (0, 3) else ("on", "off")
        for name in (*order, "beautify"):
            model, inputs, outputs = plans[name]
            server_before, client_before, start = _server_cpu_ms(triton.process.pid), time.process_time(), time.perf_counter()
            requests_before, ns_before = _beautify_compute_ns(client)
            latencies[name] += asyncio.run(_drive(triton, model, inputs, outputs, concurrency, calls))
            seconds[name] += time.perf_counter() - start
            requests_after, ns_after = _beautify_compute_ns(client)
            compute[name][0] += requests_after - requests_before
            compute[name][1] += ns_after - ns_before
            for process, ms in _server_cpu_ms(triton.process.pid).items():
                cpu[name][process] = cpu[name].get(process, 0.0) + ms - server_before.get(process, 0.0)
            cpu[name][CLIENT] = cpu[name].get(CLIENT, 0.0) + (time.process_time() - client_before) * 1000
        echo(f"beauty round {index + 1}/{rounds}: " + "  ".join(
            f"{n} {sum(v.values()) / len(latencies[n]):.1f} CPU ms/call" for n, v in cpu.items()))

    def per_call(name: str) -> dict:
        figures = {p: round(ms / len(latencies[name]), 2) for p, ms in sorted(cpu[name].items())}
        figures["total"] = round(sum(cpu[name].values()) / len(latencies[name]), 2)
        return figures

    result = BeautyCost(value=value, concurrency=concurrency, calls_per_block=calls, rounds=rounds)
    result.poster_cpu_ms = {"off": per_call("off"), "on": per_call("on")}
    result.poster_increase = round(result.poster_cpu_ms["on"]["total"] / result.poster_cpu_ms["off"]["total"] - 1, 4)
    result.beautify_compute_ms = {n: round(compute[n][1] / max(compute[n][0], 1) / 1e6, 2) for n in ("off", "on")}
    result.beautify_call_cpu_ms = per_call("beautify")
    result.beautify_call_p50_ms = round(float(np.percentile(np.asarray(latencies["beautify"]) * 1000, 50)), 1)
    result.posters_per_s = {n: round(len(latencies[n]) / seconds[n], 2) for n in plans}
    echo(f"beauty at {value:g}: {result.poster_cpu_ms['on']['total']} vs {result.poster_cpu_ms['off']['total']} "
         f"CPU ms per poster ({result.poster_increase:+.1%}); Beautify {result.beautify_call_cpu_ms['total']} CPU ms per call")
    return result


def report_lines(cost: BeautyCost) -> list[str]:
    """The bench report's Markdown section."""
    off, on, call = cost.poster_cpu_ms["off"], cost.poster_cpu_ms["on"], cost.beautify_call_cpu_ms
    names = sorted((set(off) | set(on) | set(call)) - {"total"}) + ["total"]
    lines = [
        "", f"Beauty: posters with all four effects at {cost.value:g} vs off, and Beautify calls (all four at "
        f"{cost.value:g}), at concurrency {cost.concurrency}, {cost.rounds} rounds of {cost.calls_per_block} calls "
        "each (ABBA order). CPU ms per call by process:", "",
        "| process | poster, beauty off | poster, beauty on | Beautify call |", "|---|---|---|---|",
    ]
    lines += [f"| {n} | {off.get(n, '-')} | {on.get(n, '-')} | {call.get(n, '-')} |" for n in names]
    lines += [
        "",
        f"Poster CPU with beauty on: {cost.poster_increase:+.1%}. The beautify model's compute per poster "
        f"(Triton's statistics): {cost.beautify_compute_ms['off']} ms off (passed through), "
        f"{cost.beautify_compute_ms['on']} ms on. Beautify p50 {cost.beautify_call_p50_ms} ms; calls/s "
        f"{json_dumps(cost.posters_per_s)}.",
        "",
    ]
    return lines


def json_dumps(value) -> str:
    import json

    return json.dumps(value)
