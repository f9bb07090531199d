"""Replicas behind a dns:/// URL (a Kubernetes headless Service) follow what it resolves to."""

from __future__ import annotations

import asyncio

import pytest

from facefuse.gateway.errors import Unavailable
from facefuse.gateway.triton import TritonPool


class Dns:
    """A resolver whose answer the test changes; OSError stands for a failed lookup."""

    def __init__(self, *answers):
        self.answers = list(answers)

    async def __call__(self, name: str, port: int) -> list[str]:
        assert (name, port) == ("triton-pods.ns.svc", 8001)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [f"{ip}:{port}" for ip in answer]


def urls_after_each_refresh(dns: Dns, static: tuple[str, ...] = (), busy: str | None = None) -> list[list[str]]:
    async def run():
        # Channels are created lazily and never connect: no server is needed.
        pool = TritonPool([*static, "dns:///triton-pods.ns.svc:8001"], hedge_delay_s=1.0, max_inflight_per_replica=4,
                          resolver=dns)
        seen = []
        try:
            while dns.answers:
                await pool.refresh()
                if busy:
                    for replica in pool.replicas:
                        if replica.url == busy:
                            replica.in_flight = 1
                seen.append([r.url for r in pool.replicas])
            return seen, [r.url for r in pool.replica_set.retiring]
        finally:
            await pool.close()

    return asyncio.run(run())


def test_pods_added_by_the_autoscaler_become_replicas_and_gone_ones_leave():
    seen, retiring = urls_after_each_refresh(Dns(["10.0.0.1"], ["10.0.0.1", "10.0.0.2"], ["10.0.0.2"]))
    assert seen == [["10.0.0.1:8001"], ["10.0.0.1:8001", "10.0.0.2:8001"], ["10.0.0.2:8001"]]
    assert retiring == []  # nothing was in flight on the pod that left: its channel is closed


def test_a_replica_keeps_its_state_across_refreshes_and_a_busy_leaver_retires_after_its_calls():
    seen, retiring = urls_after_each_refresh(Dns(["10.0.0.1", "10.0.0.2"], ["10.0.0.2"]), busy="10.0.0.1:8001")
    assert seen[-1] == ["10.0.0.2:8001"]
    assert retiring == ["10.0.0.1:8001"]


def test_a_failed_lookup_keeps_the_replicas_known_so_far():
    seen, _ = urls_after_each_refresh(Dns(["10.0.0.1"], OSError("SERVFAIL"), ["10.0.0.1", "10.0.0.3"]))
    assert seen == [["10.0.0.1:8001"], ["10.0.0.1:8001"], ["10.0.0.1:8001", "10.0.0.3:8001"]]


def test_static_urls_stay_beside_discovered_ones():
    seen, _ = urls_after_each_refresh(Dns(["10.0.0.1"], []), static=("triton-a:8001",))
    assert seen == [["triton-a:8001", "10.0.0.1:8001"], ["triton-a:8001"]]


def test_a_call_before_any_address_is_known_is_unavailable_not_a_crash():
    async def run():
        pool = TritonPool(["dns:///triton-pods.ns.svc:8001"], hedge_delay_s=1.0, max_inflight_per_replica=4,
                          resolver=Dns())
        try:
            pool.admission.order()
        finally:
            await pool.close()

    with pytest.raises(Unavailable):
        asyncio.run(run())


def test_a_dns_url_without_a_port_is_refused_with_the_form_to_use():
    with pytest.raises(ValueError, match="dns:///<name>:<port>"):
        TritonPool(["dns:///triton-pods"], hedge_delay_s=1.0, max_inflight_per_replica=4)
