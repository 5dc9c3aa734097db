"""The real stack for a benchmark run: a local tritonserver on free ports and the gateway on a
free port, as an aiohttp `AppRunner` in this process or as a `hermes serve` child process."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, fields, replace
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from benchmarks import resources
from benchmarks.audio import PROJECT_ROOT
from gateway.backend.triton_pool import TritonPool
from gateway.server.app import SERVER_OPTIONS, create_app
from gateway.server.settings import ENV_PREFIX, Settings
from gateway.tools.local_triton import DEFAULT_MODEL_REPOSITORY, LocalTriton, TritonPorts
from gateway.tools.supervisor import TritonSupervisor

GATEWAY_START_TIMEOUT_S = 60.0
GATEWAY_STOP_TIMEOUT_S = 60.0  # SIGTERM, then SIGKILL after this long


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Executions:
    """Triton's executions of the model so far by batch size: how many, and the seconds they
    took (compute input, infer and output). Whether the model was busy for a run's whole
    wall time, and with what batches, tells a model-bound run from one where the model waited
    for its requests."""

    by_size: dict[int, tuple[int, float]]

    @classmethod
    def of(cls, stats: dict) -> Executions:
        """From a model's statistics (`GET /v2/models/NAME/stats`)."""
        phases = ("compute_input", "compute_infer", "compute_output")
        return cls(
            {
                int(batch["batch_size"]): (
                    int(batch["compute_infer"]["count"]),
                    sum(int(batch[phase]["ns"]) for phase in phases) / 1e9,
                )
                for batch in stats["model_stats"][0].get("batch_stats", [])
            }
        )

    def since(self, earlier: Executions) -> Executions:
        counts = {}
        for size, (count, seconds) in self.by_size.items():
            before, before_s = earlier.by_size.get(size, (0, 0.0))
            if count > before:
                counts[size] = (count - before, seconds - before_s)
        return Executions(counts)

    @property
    def executions(self) -> int:
        return sum(count for count, _ in self.by_size.values())

    @property
    def inferences(self) -> int:
        """Requests executed (each of ours one batch row)."""
        return sum(size * count for size, (count, _) in self.by_size.items())

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds in self.by_size.values())

    def sizes(self) -> str:
        """e.g. "2×1, 16×7": seven executions of 16 requests and one of 2."""
        return ", ".join(f"{size}×{count}" for size, (count, _) in sorted(self.by_size.items()))


@dataclass(frozen=True)
class LoopLag:
    """The gateway's `hermes_event_loop_lag_seconds` histogram as read at one moment: how
    late its event loop ran a timer due every 0.25 s (gateway/server/loop_lag.py)."""

    count: float
    total_s: float
    cumulative: tuple[tuple[float, float], ...]  # (bucket's upper bound s, notes up to it)

    @classmethod
    def of(cls, exposition: str) -> LoopLag:
        """From the gateway's `GET /metrics` page."""
        count, total, cumulative = 0.0, 0.0, []
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == "hermes_event_loop_lag_seconds_count":
                    count = sample.value
                elif sample.name == "hermes_event_loop_lag_seconds_sum":
                    total = sample.value
                elif sample.name == "hermes_event_loop_lag_seconds_bucket":
                    cumulative.append((float(sample.labels["le"]), sample.value))
        return cls(count, total, tuple(sorted(cumulative)))

    def since(self, earlier: LoopLag) -> LoopLag:
        before = dict(earlier.cumulative)
        return LoopLag(
            self.count - earlier.count,
            self.total_s - earlier.total_s,
            tuple((bound, notes - before.get(bound, 0.0)) for bound, notes in self.cumulative),
        )

    @property
    def mean_ms(self) -> float:
        return 1000 * self.total_s / self.count if self.count else 0.0

    @property
    def p95_bound_ms(self) -> float:
        """The upper bound of the bucket holding the 95th percentile (inf past the last)."""
        return 1000 * next(
            (bound for bound, notes in self.cumulative if notes >= 0.95 * self.count),
            float("inf"),
        )

    def describe(self) -> str:
        """e.g. "1.2 / ≤ 5": the mean, and the bound of the p95's bucket, in ms."""
        return f"{self.mean_ms:.1f} / ≤ {self.p95_bound_ms:g}"

    @staticmethod
    def between(before: LoopLag | None, after: LoopLag | None) -> str | None:
        """`describe()` of the lag noted from `before` to `after`; None when either is (the
        gateway ran in the benchmark's process)."""
        return None if before is None or after is None else after.since(before).describe()


async def settled(read: Callable[[], Awaitable[dict]]) -> dict:
    """Model statistics once they stop changing. Triton counts an execution when the model's
    `execute` returns, which may come after its answers reached the client (ours sends each
    answer as soon as it is ready): read until two reads 0.1 s apart agree, or a run's last
    batch is counted in the next run."""
    last = await read()
    while True:
        await asyncio.sleep(0.1)
        if (now := await read()) == last:
            return now
        last = now


@dataclass
class Stack:
    gateway_url: str
    triton_http_url: str
    triton_metrics_url: str
    settings: Settings
    session: aiohttp.ClientSession
    gateway_pid: int  # this process when the gateway runs in it
    triton_pid: int  # the tritonserver process; its Python backend stubs are its children
    triton: LocalTriton | None = None  # the server itself, when a supervisor may restart it
    supervisor: TritonSupervisor | None = None

    def current_triton_pid(self) -> int:
        """The tritonserver process now: after a restart by the supervisor, the new one."""
        if self.triton is not None and (process := self.triton.process) is not None:
            return process.pid
        return self.triton_pid

    async def triton_json(self, path: str) -> dict:
        async with self.session.get(f"{self.triton_http_url}{path}") as reply:
            reply.raise_for_status()
            return await reply.json()

    async def triton_version(self) -> str:
        return (await self.triton_json("/v2")).get("version", "?")

    def cpu_seconds_by_process(self) -> dict[str, float]:
        """CPU time the service has used so far: the gateway (with the gateway in this
        process that includes the benchmark's own clients), and tritonserver with its model
        process. Each is one Python process at heart: either at one core busy is where the
        service stops scaling."""
        return {
            "gateway": resources.cpu_seconds(self.gateway_pid),
            "triton": resources.cpu_seconds(self.triton_pid),
        }

    def gateway_loop_cpu_seconds(self) -> float | None:
        """The gateway's event loop's CPU time so far (its main thread): where one gateway
        process stops scaling. None with the gateway in this process, whose main thread runs
        the benchmark's clients too."""
        if self.gateway_pid == os.getpid():
            return None
        return resources.main_thread_cpu_seconds(self.gateway_pid)

    async def gateway_loop_lag(self) -> LoopLag | None:
        """The gateway's event loop lag so far, from its metrics. None with the gateway in
        this process, whose loop runs the benchmark's clients too."""
        if self.gateway_pid == os.getpid():
            return None
        async with self.session.get(f"{self.gateway_url}/metrics") as reply:
            reply.raise_for_status()
            return LoopLag.of(await reply.text())

    def triton_pool(self) -> AbstractAsyncContextManager[TritonPool]:
        """A gRPC client straight to this stack's Triton, past the gateway; closed on exit."""
        return triton_pool(self.settings)

    async def model_stats(self) -> dict:
        """Triton's statistics of the model so far (`GET /v2/models/NAME/stats`), settled."""
        return await settled(
            lambda: self.triton_json(f"/v2/models/{self.settings.triton_model}/stats")
        )

    async def batch_counts(self) -> tuple[int, int]:
        """Triton's (inference_count, execution_count) for the model so far, less the
        gateway's wake-ups for the batcher and the executions of them alone (the model's
        `hermes_model_wake_up_*_total`): the windows and steps it worked on, and in how many
        executions."""
        model = (await self.model_stats())["model_stats"][0]
        wake_ups = {
            sample.name: int(sample.value)
            for sample in await self._model_samples("hermes_model_wake_up_")
        }
        return (
            int(model["inference_count"]) - wake_ups["hermes_model_wake_up_requests_total"],
            int(model["execution_count"]) - wake_ups["hermes_model_wake_up_executions_total"],
        )

    async def model_phases(self) -> dict[str, float]:
        """The model's seconds so far in each phase of its batches, from Triton's metrics
        (`hermes_model_phase_seconds_total`)."""
        return {
            sample.labels["phase"]: sample.value
            for sample in await self._model_samples("hermes_model_phase_seconds_total")
        }

    async def _model_samples(self, prefix: str) -> list[Sample]:
        """The model's own samples in Triton's metrics whose names start with `prefix`."""
        async with self.session.get(self.triton_metrics_url) as reply:
            reply.raise_for_status()
            text = await reply.text()
        return [
            sample
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith(prefix)
            and sample.labels.get("model") == self.settings.triton_model
        ]

    async def executions(self) -> Executions:
        """The model's executions so far, by batch size (Triton's `batch_stats`)."""
        return Executions.of(await self.model_stats())


@asynccontextmanager
async def local_triton(
    log_path: Path,
    model_repository: Path = DEFAULT_MODEL_REPOSITORY,
    extra_args: tuple[str, ...] = (),
) -> AsyncIterator[LocalTriton]:
    ports = TritonPorts(free_port(), free_port(), free_port())
    triton = LocalTriton(
        ports=ports, log_path=log_path, model_repository=model_repository, extra_args=extra_args
    )
    await asyncio.to_thread(triton.__enter__)  # starts it and waits until the model is ready
    try:
        yield triton
    finally:
        await asyncio.to_thread(triton.stop)


@asynccontextmanager
async def triton_pool(settings: Settings) -> AsyncIterator[TritonPool]:
    """The gateway's gRPC client to the Triton `settings` name, for calls past the gateway;
    closed on exit."""
    pool = TritonPool(
        settings.triton_endpoints,
        settings.triton_model,
        timeout_s=settings.triton_timeout_s,
        ready_timeout_s=settings.triton_ready_timeout_s,
    )
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def gateway_in_process(settings: Settings) -> AsyncIterator[int]:
    """The gateway app served by this process's event loop; yields this process's id."""
    runner = web.AppRunner(create_app(settings), **SERVER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    try:
        yield os.getpid()
    finally:
        await runner.cleanup()


def settings_flags(settings: Settings) -> list[str]:
    """`hermes serve` flags for every setting that differs from its default (those derived
    from others, as the endpoints from `triton_url`, are no flags)."""
    defaults = Settings()
    return [
        f"--{field.name.replace('_', '-')}={getattr(settings, field.name)}"
        for field in fields(Settings)
        if field.init and getattr(settings, field.name) != getattr(defaults, field.name)
    ]


@asynccontextmanager
async def gateway_subprocess(settings: Settings, log_path: Path) -> AsyncIterator[int]:
    """`hermes serve` as a child process with these settings (the `HERMES_*` variables of this
    environment are not passed on), its output appended to `log_path`; yields its process id
    once it answers `/healthz`, and stops it with SIGTERM (its graceful shutdown) on exit."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.tools.cli",
            "serve",
            *settings_flags(settings),
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await wait_healthy(process, f"http://{settings.host}:{settings.port}/healthz", log_path)
        yield process.pid
    finally:
        await stop_process(process)


async def wait_healthy(process: asyncio.subprocess.Process, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                code = process.returncode
                raise RuntimeError(f"the gateway exited with code {code}; see {log_path}")
            try:
                async with session.get(url) as reply:
                    if reply.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the gateway did not answer {url} in {GATEWAY_START_TIMEOUT_S:g} s")


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if it outlives `GATEWAY_STOP_TIMEOUT_S`."""
    if process.returncode is None:
        with suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), GATEWAY_STOP_TIMEOUT_S)
        except TimeoutError:
            with suppress(ProcessLookupError):
                process.kill()
    await process.wait()


@asynccontextmanager
async def running_stack(
    log_dir: Path,
    *,
    separate_gateway: bool = False,
    supervised: bool = False,
    model_repository: Path = DEFAULT_MODEL_REPOSITORY,
    triton_args: tuple[str, ...] = (),
    **overrides: object,
) -> AsyncIterator[Stack]:
    """Triton (its log in `log_dir/triton.log`) serving `model_repository`, and the gateway:
    in this process, or with `separate_gateway` as a child process (its log in
    `log_dir/gateway.log`); `triton_args` are more tritonserver flags; `overrides` are gateway
    settings that differ from the benchmark's.
    With `supervised`, a `TritonSupervisor` restarts Triton when it dies, as `hermes up` does
    (`Stack.triton` and `Stack.supervisor` are then set)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    async with local_triton(log_dir / "triton.log", model_repository, triton_args) as triton:
        settings = Settings(
            port=free_port(),
            triton_url=triton.grpc_url,
            log_level="WARNING",
            max_audio_seconds=3600.0,
            # every benchmark client comes from this one address: no per-client limit
            max_streams=64,
            max_streams_per_client=64,
            max_uploads_per_client=64,
        )
        settings = replace(settings, **overrides)
        gateway: AbstractAsyncContextManager[int] = (
            gateway_subprocess(settings, log_dir / "gateway.log")
            if separate_gateway
            else gateway_in_process(settings)
        )
        timeout = aiohttp.ClientTimeout(total=1800)
        supervisor = TritonSupervisor(triton) if supervised else None
        if supervisor is not None:
            supervisor.start()
        try:
            async with (
                gateway as gateway_pid,
                # no limit on connections at once: aiohttp's default of 100 held every stream
                # past the 100th until one ended (a level of 192 streams ran as 100, then 92)
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0), timeout=timeout
                ) as session,
            ):
                assert triton.process is not None  # started: LocalTriton waited for the model
                yield Stack(
                    gateway_url=f"http://{settings.host}:{settings.port}",
                    triton_http_url=triton.http_url,
                    triton_metrics_url=f"http://{triton.host}:{triton.ports.metrics}/metrics",
                    settings=settings,
                    session=session,
                    gateway_pid=gateway_pid,
                    triton_pid=triton.process.pid,
                    triton=triton if supervised else None,
                    supervisor=supervisor,
                )
        finally:
            if supervisor is not None:
                await asyncio.to_thread(supervisor.stop)
