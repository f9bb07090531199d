"""The Triton replicas a gateway calls: discovery, health, and which of them are live.

- Each replica has its own channel whose gRPC service config retries UNAVAILABLE
  (a replica restarting, a connection reset) with backoff inside the call's deadline.
- A replica that answered UNAVAILABLE cools down for `cooldown_s`: it is not live, so
  calls try it last (a spare for failover only) and do not each pay a failed attempt
  first while it is down. Its first answer after that puts it back.
- A URL `dns:///name:port` stands for every address the name resolves to (Kubernetes:
  Triton's headless Service, one address per ready pod). It is resolved again at every
  readiness poll, so pods the autoscaler adds get calls within `health_poll_s`; a pod
  that left is dropped and its channel closed once its calls are done.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass

import tritonclient.grpc.aio as aioclient

from facefuse.triton_client import with_gateway_key

TRITON_SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": "inference.GRPCInferenceService"}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
CHANNEL_ARGS = [
    ("grpc.service_config", json.dumps(TRITON_SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # Reconnect quickly after a replica comes back.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
DNS_PREFIX = "dns:///"


@dataclass
class Replica:
    url: str
    client: aioclient.InferenceServerClient
    in_flight: int = 0
    attempts: int = 0  # calls sent here, answered or not
    cooling_until: float = 0.0  # monotonic time; after UNAVAILABLE
    ready: bool = False  # at the last readiness poll

    def cooling(self, now: float) -> bool:
        return now < self.cooling_until


async def resolve(name: str, port: int) -> list[str]:
    """host:port of every address `name` resolves to, sorted (IPv6 in brackets)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    hosts = {info[4][0] for info in infos}
    return sorted(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)


class ReplicaSet:
    """The replicas known now (static URLs and what dns:/// URLs resolve to), their
    readiness, and their cooling after UNAVAILABLE."""

    def __init__(self, urls: list[str], gateway_key: str | None = None, resolver=resolve, cooldown_s: float = 5.0):
        if not urls:
            raise ValueError("at least one Triton URL is needed")
        # (name, port) of each dns:/// URL; their replicas appear at the first refresh().
        self.services = [_name_and_port(u) for u in urls if u.startswith(DNS_PREFIX)]
        self.gateway_key = gateway_key
        self.replicas = [Replica(url, self._client(url)) for url in urls if not url.startswith(DNS_PREFIX)]
        self.retiring: list[Replica] = []  # gone from DNS, closed once their calls are done
        self._static = {r.url for r in self.replicas}
        self._resolver = resolver
        self.cooldown_s = cooldown_s

    def _client(self, url: str) -> aioclient.InferenceServerClient:
        return with_gateway_key(aioclient.InferenceServerClient(url, channel_args=CHANNEL_ARGS), self.gateway_key)

    def live(self) -> list[Replica]:
        """Replicas not cooling down; every replica when all of them are (one may be back)."""
        now = time.monotonic()
        return [r for r in self.replicas if not r.cooling(now)] or list(self.replicas)

    def cool(self, replica: Replica) -> None:
        """`replica` answered UNAVAILABLE: not live for `cooldown_s`."""
        replica.cooling_until = time.monotonic() + self.cooldown_s

    def answered(self, replica: Replica) -> None:
        """`replica` answered: live again."""
        replica.cooling_until = 0.0

    def in_flight(self) -> int:
        return sum(r.in_flight for r in self.replicas)

    async def refresh(self) -> None:
        """Resolve the dns:/// URLs again: new addresses become replicas, gone ones retire."""
        if not self.services:
            return
        resolved: list[str] = []
        for name, port in self.services:
            try:
                resolved += await self._resolver(name, port)
            except OSError:  # no answer this time: keep what we have rather than drop every pod
                return
        wanted = self._static | set(resolved)
        known = {r.url for r in self.replicas}
        self.retiring += [r for r in self.replicas if r.url not in wanted]
        self.replicas = [r for r in self.replicas if r.url in wanted]
        self.replicas += [Replica(url, self._client(url)) for url in sorted(set(resolved) - known)]
        for replica in [r for r in self.retiring if r.in_flight == 0]:
            self.retiring.remove(replica)
            await replica.client.close()

    async def ready(self) -> list[bool]:
        """Readiness of each replica (Triton's ready endpoint); dns:/// URLs are resolved again first."""
        await self.refresh()

        async def one(replica: Replica) -> bool:
            try:
                replica.ready = bool(await replica.client.is_server_ready(client_timeout=1.0))
            except Exception:  # noqa: BLE001 - unreachable or failing: not ready
                replica.ready = False
            return replica.ready

        return list(await asyncio.gather(*(one(r) for r in self.replicas)))

    async def close(self) -> None:
        for replica in self.replicas + self.retiring:
            await replica.client.close()


def _name_and_port(url: str) -> tuple[str, int]:
    name, _, port = url.removeprefix(DNS_PREFIX).rpartition(":")
    if not name or not port.isdigit():
        raise ValueError(f"Triton URL {url!r}: write dns:///<name>:<port>, e.g. dns:///triton-pods:8001")
    return name, int(port)
