"""Many Triton replicas behind one `gateway.core.contract.ModelBackend`.

The Triton setting names one or more `host:port` endpoints, comma-separated. A name may
resolve to several addresses (a Kubernetes headless Service resolves to one per ready pod):
every address is a replica, and names are resolved again periodically as pods come and go.

Each request goes to the healthy replica with the fewest requests outstanding. A replica
that fails a request with "unavailable" is marked down and the request is sent to another
one; a call that failed after it may have run (a deadline, a connection lost mid-call) is not
sent again, which under overload would only multiply the work. A background task probes every
replica's model readiness and puts recovered ones back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.backend.endpoints import Endpoint, format_address
from gateway.backend.triton_client import TritonAsr
from gateway.core.contract import (
    AsrBusy,
    AsrInterrupted,
    AsrUnavailable,
    Priority,
    ServedModel,
    SpeakerEmbeddings,
    TranscribeOptions,
    WindowResult,
)

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_with_dns(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, IPv4 only where it has both (a dual-stack pod has
    one of each, and it is one replica)."""
    with contextlib.suppress(ValueError):
        return [format_address(str(ipaddress.ip_address(host)), port)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    ipv4 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET})
    ipv6 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET6})
    return [format_address(address, port) for address in ipv4 or ipv6]


@dataclass(eq=False)
class Replica:
    address: str
    client: TritonAsr
    healthy: bool = True  # until a request or a probe says otherwise
    outstanding: int = 0
    dispatched: int = 0
    last_pick: int = 0  # breaks ties between equally busy replicas: least recently used
    failures: int = 0

    def describe(self) -> dict[str, object]:
        return {
            "address": self.address,
            "healthy": self.healthy,
            "outstanding": self.outstanding,
            "dispatched": self.dispatched,
            "failures": self.failures,
            "wake_ups": self.client.wake_ups.sent,
        }


class TritonPool:
    """Spreads inference over the Triton replicas that `endpoints` resolve to."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        model: str,
        *,
        timeout_s: float,
        ready_timeout_s: float,
        probe_interval_s: float = 2.0,
        resolve_interval_s: float = 30.0,
        resolver: Resolver = resolve_with_dns,
    ) -> None:
        self.url = ",".join(map(str, endpoints))
        self.model = model
        self.endpoints = tuple(endpoints)
        self._timeout_s = timeout_s
        self._ready_timeout_s = ready_timeout_s
        self._probe_interval_s = probe_interval_s
        self._resolve_interval_s = resolve_interval_s
        self._resolver = resolver
        self._resolved: dict[Endpoint, list[str]] = {}
        self._replicas: dict[str, Replica] = {}
        self._retired: list[Replica] = []
        self._maintenance: asyncio.Task[None] | None = None
        self._picks = itertools.count(1)

    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    async def start(self) -> None:
        """Resolve the endpoints and start probing; a name that does not resolve yet is
        tried again on every probe until it does."""
        await self.refresh()
        self._maintenance = asyncio.create_task(self._maintain(), name="triton-pool")

    async def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        for replica in [*self._replicas.values(), *self._retired]:
            await replica.client.close()
        self._replicas.clear()
        self._retired.clear()

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority = Priority.FILE
    ) -> WindowResult:
        return await self._call(lambda client: client.transcribe(audio, options, priority=priority))

    async def embed_speakers(self, audio: np.ndarray) -> SpeakerEmbeddings:
        """The speaker model's embeddings, from a replica picked as for a transcription."""
        return await self._call(lambda client: client.embed_speakers(audio))

    async def _call(self, call: Callable[[TritonAsr], Awaitable[Any]]) -> Any:
        tried: set[str] = set()
        failure: AsrUnavailable | None = None
        while (replica := self._pick(tried)) is not None:
            tried.add(replica.address)
            replica.outstanding += 1
            replica.dispatched += 1
            replica.last_pick = next(self._picks)
            try:
                return await call(replica.client)
            except AsrInterrupted:
                raise  # it may have run there: sent again, it could run twice
            except AsrBusy as exc:
                failure = exc  # busy, not down: another replica may have room
            except AsrUnavailable as exc:
                failure = exc
                self._mark_down(replica, exc)
            finally:
                replica.outstanding -= 1
        raise failure or AsrUnavailable(f"no Triton replica found at {self.url}")

    async def is_ready(self) -> bool:
        """Probe every replica now; ready when at least one serves the model."""
        await self._probe()
        return any(replica.healthy for replica in self._replicas.values())

    async def served_model(self) -> ServedModel:
        """What the first replica that answers serves, healthy ones asked first (replicas
        are meant to serve the same weights)."""
        failure: AsrUnavailable | None = None
        for replica in sorted(self._replicas.values(), key=lambda r: not r.healthy):
            try:
                return await replica.client.served_model()
            except AsrUnavailable as exc:
                failure = exc
        raise failure or AsrUnavailable(f"no Triton replica found at {self.url}")

    def describe(self) -> dict[str, object]:
        return {
            "model": self.model,
            "backend": f"Triton at {self.url}",
            "replicas": [replica.describe() for replica in self._replicas.values()],
        }

    def _pick(self, tried: set[str]) -> Replica | None:
        untried = [r for r in self._replicas.values() if r.address not in tried]
        # With every replica marked down, try them anyway: a probe may just not have seen
        # one come back yet, and failing fast here would turn a blip into an error.
        candidates = [r for r in untried if r.healthy] or untried
        return min(candidates, key=lambda r: (r.outstanding, r.last_pick), default=None)

    def _mark_down(self, replica: Replica, reason: Exception) -> None:
        replica.failures += 1
        if replica.healthy:
            logger.warning("Triton replica %s taken out: %s", replica.address, reason)
        replica.healthy = False

    async def refresh(self) -> None:
        """Resolve the endpoints again: add new addresses, retire vanished ones (closed once
        their outstanding requests are done). A failed lookup keeps what it had."""
        for endpoint in self.endpoints:
            try:
                self._resolved[endpoint] = await self._resolver(endpoint.host, endpoint.port)
            except OSError as exc:
                logger.warning("cannot resolve Triton endpoint %s: %s", endpoint, exc)
        resolved = [address for addresses in self._resolved.values() for address in addresses]
        for address in dict.fromkeys(resolved):
            if address not in self._replicas:
                logger.info("Triton replica %s added", address)
                self._replicas[address] = Replica(address, self._client(address))
        for address in set(self._replicas) - set(resolved):
            logger.info("Triton replica %s removed (no longer resolved)", address)
            self._retired.append(self._replicas.pop(address))

    def _client(self, address: str) -> TritonAsr:
        return TritonAsr(
            address, self.model, timeout_s=self._timeout_s, ready_timeout_s=self._ready_timeout_s
        )

    async def _probe(self) -> None:
        replicas = list(self._replicas.values())
        states = await asyncio.gather(*(replica.client.is_ready() for replica in replicas))
        for replica, ready in zip(replicas, states, strict=True):
            if ready and not replica.healthy:
                logger.info("Triton replica %s is back", replica.address)
            elif not ready and replica.healthy:
                logger.warning("Triton replica %s is not ready", replica.address)
            replica.healthy = ready

    async def _close_idle_retired(self) -> None:
        for replica in [r for r in self._retired if r.outstanding == 0]:
            self._retired.remove(replica)
            await replica.client.close()

    async def _maintain(self) -> None:
        resolve_every = max(1, round(self._resolve_interval_s / self._probe_interval_s))
        for tick in itertools.count(1):
            await asyncio.sleep(self._probe_interval_s)
            try:
                if tick % resolve_every == 0 or not self._replicas:
                    await self.refresh()
                await self._probe()
                await self._close_idle_retired()
            except Exception:  # the loop must outlive any one bad round
                logger.exception("Triton replica maintenance failed")
