"""Triton's Prometheus metrics, sampled during a load test, turned into per-stage figures."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Counters Triton exports per model (cumulative since start).
COUNTERS = {
    "nv_inference_request_success": "requests",
    "nv_inference_exec_count": "executions",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_infer_duration_us": "compute_us",
    "nv_inference_compute_input_duration_us": "compute_input_us",
    "nv_inference_compute_output_duration_us": "compute_output_us",
}


def parse(text: str) -> dict[str, dict[str, float]]:
    """model -> counter name -> value, summed over versions."""
    models: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # The parser reports counters as <name>_total.
            key = COUNTERS.get(sample.name.removesuffix("_total"))
            if key is None or "model" not in sample.labels:
                continue
            counters = models.setdefault(sample.labels["model"], {})
            counters[key] = counters.get(key, 0.0) + float(sample.value)
    return models


@dataclass
class Sample:
    at_s: float
    models: dict[str, dict[str, float]]


@dataclass
class MetricsRecorder:
    """Polls one or more metrics URLs every interval_s in a background thread."""

    urls: list[str]
    interval_s: float = 2.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-metrics", daemon=True)

    def scrape(self) -> dict[str, dict[str, float]]:
        merged: dict[str, dict[str, float]] = {}
        for url in self.urls:
            with urllib.request.urlopen(url, timeout=5) as reply:
                for model, counters in parse(reply.read().decode()).items():
                    target = merged.setdefault(model, {})
                    for key, value in counters.items():
                        target[key] = target.get(key, 0.0) + value
        return merged

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(Sample(time.time(), self.scrape()))
            except OSError:
                pass  # a replica restarting mid-test: skip this sample
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def stage_series(samples: list[Sample], stages: tuple[str, ...]) -> dict[str, list[tuple[float, float, float]]]:
    """stage -> [(time, queue ms per request, compute ms per request)] between samples."""
    series: dict[str, list[tuple[float, float, float]]] = {s: [] for s in stages}
    for before, after in zip(samples, samples[1:]):
        for stage in stages:
            a, b = after.models.get(stage, {}), before.models.get(stage, {})
            requests = a.get("requests", 0) - b.get("requests", 0)
            if requests <= 0:
                continue
            queue = a.get("queue_us", 0) - b.get("queue_us", 0)
            compute = sum(a.get(k, 0) - b.get(k, 0) for k in ("compute_us", "compute_input_us", "compute_output_us"))
            series[stage].append((after.at_s, queue / requests / 1000, compute / requests / 1000))
    return series


def stage_totals(samples: list[Sample], stages: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Over the whole run: requests, executions, queue and compute ms per request."""
    if len(samples) < 2:
        return {}
    first, last = samples[0].models, samples[-1].models
    totals = {}
    for stage in stages:
        if stage not in last:
            continue
        a, b = last[stage], first.get(stage, {})
        requests = a.get("requests", 0) - b.get("requests", 0)
        executions = a.get("executions", 0) - b.get("executions", 0)
        compute = sum(a.get(k, 0) - b.get(k, 0) for k in ("compute_us", "compute_input_us", "compute_output_us"))
        totals[stage] = {
            "requests": requests,
            "mean_batch": round(requests / executions, 2) if executions else 0.0,
            "queue_ms_per_request": round((a.get("queue_us", 0) - b.get("queue_us", 0)) / requests / 1000, 2) if requests else 0.0,
            "compute_ms_per_request": round(compute / requests / 1000, 2) if requests else 0.0,
            "busy_s": round(compute / 1e6, 2),
        }
    return totals
