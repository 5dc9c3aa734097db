"""The gateway's own metrics, served at `GET /metrics` in Prometheus' text format.

Written with `prometheus-client` (the Prometheus project's own library: escaping, the
exposition and OpenMetrics formats and histogram buckets are its business, not ours). Each
application has its own `CollectorRegistry` (`GatewayMetrics.registry`), never the process'
global one, so that two apps in one process (the tests) count apart.

What is measured where, all of it in the server layer (the modes and the core know nothing of
metrics; they report through the callbacks they already have):

- requests by route and status: `middleware`, the outermost one;
- audio transcribed, by mode: uploads as their windows are done (`count_file_audio`), live
  streams as their audio arrives (`StreamWatch.received`);
- uploads' wait for a running slot and their refusals: `gateway.server.admission`;
- live streams (`/stream-audio` and the Realtime route): how many are open (the app's
  `STREAMS`, read at scrape time), and per stream (`StreamWatch`; one per Realtime turn) the
  latency of each final, the model time of each step and the audio skipped;
- Triton replicas: their health and outstanding requests, read from the backend's
  `describe()` at scrape time (`ReplicaCollector`);
- the event loop's lag: `gateway.server.loop_lag`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import prometheus_client
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from gateway.modes.files import FileProgress

# No `*_created` series beside every counter and histogram: they double the exposition and no
# query here uses them (the process' only prometheus-client user is the gateway).
prometheus_client.disable_created_metrics()

MODES = ("file", "stream")
# Why an upload was refused (503 server_busy, or 429 for refused_uploads), as
# `gateway.server.admission` says
UPLOAD_REFUSALS = (
    "waiting_room_full",
    "client_limit",
    "decoded_audio_budget",
    "client_decoded_audio",
    "refused_uploads",
)
# Why a stream was refused (closed 1013)
STREAM_REFUSALS = ("streams_limit", "client_limit")
# The `reason` of a stream's `skipped` messages (gateway.modes.streaming)
SKIP_REASONS = ("overload", "model_unavailable", "model_error", "rejected")
# Methods counted by name; any other is "other" (a client chooses the method: no label value
# may grow without bound)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # no route: 404, 405
CLIENT_GONE = 499  # the client hung up before the answer began (nginx's code for it)
ANSWERED = web.RequestKey("answered_status", int)  # the status whose headers went out

FINAL_LATENCY_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
LAG_INTERVAL_S = 0.25  # how often the event loop's lag is noted (gateway.server.loop_lag)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ReplicaCollector(Collector):
    """The backend's replicas as it describes them when scraped (`describe()["replicas"]`:
    address, healthy, outstanding, dispatched, failures, wake_ups); nothing for a backend
    without any."""

    def __init__(self, describe: Callable[[], dict[str, Any]]) -> None:
        self._describe = describe

    def collect(self) -> Iterable[Metric]:
        replicas = self._describe().get("replicas", [])
        healthy = GaugeMetricFamily(
            "hermes_triton_replica_healthy",
            "1 while the Triton replica serves the model (its last request or probe succeeded)",
            labels=["address"],
        )
        outstanding = GaugeMetricFamily(
            "hermes_triton_replica_outstanding_requests",
            "Requests (file windows, stream steps) sent to the replica and not answered yet",
            labels=["address"],
        )
        dispatched = CounterMetricFamily(
            "hermes_triton_replica_dispatched_requests",
            "Requests sent to the replica since the gateway found it",
            labels=["address"],
        )
        failures = CounterMetricFamily(
            "hermes_triton_replica_failures",
            "Requests the replica failed as unavailable (it was taken out each time)",
            labels=["address"],
        )
        wake_ups = CounterMetricFamily(
            "hermes_triton_replica_wake_ups",
            "Wake-up requests sent to the replica's batcher, which can sleep through the end "
            "of an execution (gateway/backend/batcher_wake_up.py)",
            labels=["address"],
        )
        for replica in replicas:
            address = [str(replica["address"])]
            healthy.add_metric(address, 1.0 if replica["healthy"] else 0.0)
            outstanding.add_metric(address, replica["outstanding"])
            dispatched.add_metric(address, replica["dispatched"])
            failures.add_metric(address, replica["failures"])
            wake_ups.add_metric(address, replica["wake_ups"])
        return [healthy, outstanding, dispatched, failures, wake_ups]


class GatewayMetrics:
    """Every metric of one application, in its own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "hermes_http_requests",
            "HTTP requests answered, by route (its pattern, e.g. /static/{name}), method and "
            "status; a WebSocket session is counted (101) when it ends; 499: the client hung up",
            ["route", "method", "status"],
            registry=registry,
        )
        self.audio = Counter(
            "hermes_audio_seconds",
            "Seconds of audio transcribed: file, uploads' decoded audio as its windows are "
            "done; stream, live audio as it arrives",
            ["mode"],
            registry=registry,
        )
        self.admission_wait = Histogram(
            "hermes_upload_admission_wait_seconds",
            "How long an upload, its body read, waited for a running slot (max_uploads_running)",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.upload_refusals = Counter(
            "hermes_upload_refusals",
            "Uploads refused before their work, by reason: waiting_room_full "
            "(max_uploads_running + max_uploads_waiting), client_limit "
            "(max_uploads_per_client), decoded_audio_budget (max_decoded_audio_mb), "
            "client_decoded_audio (one client's share of it): 503 "
            "server_busy; refused_uploads (max_refused_uploads_per_client): 429",
            ["reason"],
            registry=registry,
        )
        self.uploads = Gauge(
            "hermes_uploads_admitted",
            "Uploads being transcribed or waiting for a turn now",
            registry=registry,
        )
        self.streams = Gauge(
            "hermes_streams_active",
            "Live streams open now (WebSocket sessions that count against max_streams)",
            registry=registry,
        )
        self.stream_refusals = Counter(
            "hermes_stream_refusals",
            "Live streams refused (closed 1013), by reason: streams_limit (max_streams), "
            "client_limit (max_streams_per_client)",
            ["reason"],
            registry=registry,
        )
        self.final_latency = Histogram(
            "hermes_stream_final_latency_seconds",
            "From the arrival of the audio a final ends with to the final's sending",
            buckets=FINAL_LATENCY_BUCKETS,
            registry=registry,
        )
        self.step_duration = Histogram(
            "hermes_stream_step_duration_seconds",
            "How long a live stream's step waited for the model (Triton's queue included), "
            "per step that sent audio",
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.skipped = Counter(
            "hermes_stream_skipped_seconds",
            "Seconds of live audio dropped before the model heard it (`skipped`), by reason",
            ["reason"],
            registry=registry,
        )
        self.loop_lag = Histogram(
            "hermes_event_loop_lag_seconds",
            f"How late the gateway's event loop ran a timer due every {LAG_INTERVAL_S:g} s: how "
            "long everything on the loop (streams' frames and steps, answers) waits for it",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        # every known label value from the start, so that rate() sees the first increase
        for mode in MODES:
            self.audio.labels(mode)
        for reason in UPLOAD_REFUSALS:
            self.upload_refusals.labels(reason)
        for reason in STREAM_REFUSALS:
            self.stream_refusals.labels(reason)
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)

    def watch_backend(self, describe: Callable[[], dict[str, Any]]) -> None:
        """Read the backend's replicas (`describe()`) at every scrape."""
        self.registry.register(ReplicaCollector(describe))

    def count_streams(self, open_streams: Callable[[], int]) -> None:
        self.streams.set_function(open_streams)

    def count_uploads(self, admitted: Callable[[], int]) -> None:
        self.uploads.set_function(admitted)

    def refuse_upload(self, reason: str) -> None:
        self.upload_refusals.labels(reason).inc()

    def refuse_stream(self, reason: str) -> None:
        self.stream_refusals.labels(reason).inc()

    async def count_file_audio(
        self, progress: AsyncIterator[FileProgress]
    ) -> AsyncIterator[FileProgress]:
        """`progress` as it is, counting each report's newly processed audio."""
        counter = self.audio.labels("file")
        done = 0.0
        async for report in progress:
            counter.inc(max(report.processed - done, 0.0))
            done = max(done, report.processed)
            yield report

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The registry's samples in the format `accept` asks for (Prometheus text or
        OpenMetrics), and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


METRICS = web.AppKey("metrics", GatewayMetrics)


class StreamWatch:
    """One live stream's measurements. It notes when the stream's audio arrived (stream time
    received so far, clock time), so that a final's latency is the time from the arrival of
    the audio it ends with to its sending, as the benchmarks measure it from the client."""

    # Frames that come within this much stream time of a note's first share that note (its
    # time is the first frame's): latencies are exact for frames of 100 ms or more, and at most
    # this much too long for smaller ones, whose notes would otherwise grow without bound
    RESOLUTION_S = 0.1
    HISTORY = 3000  # notes kept: 300 s of stream time, beyond any buffer a final comes from

    def __init__(self, metrics: GatewayMetrics, clock: Callable[[], float] = time.monotonic):
        self._metrics = metrics
        self._clock = clock
        self._received = 0.0
        self._noted_from = 0.0  # stream time where the last note begins
        self._arrivals: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=self.HISTORY
        )

    def received(self, seconds: float) -> None:
        """`seconds` of the stream's audio (at the model's rate) came in just now."""
        if seconds <= 0:
            return
        before, self._received = self._received, self._received + seconds
        self._metrics.audio.labels("stream").inc(seconds)
        if self._arrivals and before - self._noted_from < self.RESOLUTION_S:
            self._arrivals[-1] = (self._received, self._arrivals[-1][1])
        else:
            self._arrivals.append((self._received, self._clock()))
            self._noted_from = before

    def final(self, end: float) -> None:
        """A final whose words end at stream time `end` is being sent."""
        arrived = self._arrived(end)
        if arrived is not None:
            self._metrics.final_latency.observe(max(self._clock() - arrived, 0.0))

    def skipped(self, seconds: float, reason: str) -> None:
        self._metrics.skipped.labels(reason).inc(max(seconds, 0.0))

    def model_seconds(self, seconds: float) -> None:
        """A step's model call took `seconds`."""
        self._metrics.step_duration.observe(seconds)

    def split_off(self, at: float) -> StreamWatch:
        """The watch of a stream that goes on from stream time `at` (a Realtime turn ended
        there, and the audio after it begins the next): the arrivals of that audio, in the new
        stream's time. Its audio was counted already."""
        after = StreamWatch(self._metrics, self._clock)
        after._received = max(self._received - at, 0.0)
        after._noted_from = max(self._noted_from - at, 0.0)
        after._arrivals.extend((total - at, when) for total, when in self._arrivals if total > at)
        return after

    def sent(self, message: dict[str, Any]) -> None:
        """A `/stream-audio` message is being sent: finals and skipped audio are counted."""
        kind = message.get("type")
        if kind == "final":
            self.final(message["end"])
        elif kind == "skipped":
            self.skipped(message["end"] - message["start"], message["reason"])

    def _arrived(self, end: float) -> float | None:
        """When the audio up to stream time `end` had all come: the first note that covers
        it (the last note for audio still in the resampler at the end); notes before it are
        no longer needed, as finals only move forward."""
        while len(self._arrivals) > 1 and self._arrivals[0][0] < end:
            self._arrivals.popleft()
        return self._arrivals[0][1] if self._arrivals else None


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


def middleware(metrics: GatewayMetrics) -> Middleware:
    """Counts every request by route pattern (never the raw path: one series per route, not
    per URL a client makes up), method and the status it was answered with."""

    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        status = "500"
        try:
            response = await handler(request)
            status = str(response.status)
            return response
        except web.HTTPException as exc:  # redirects; errors are answered inside
            status = str(exc.status)
            raise
        except asyncio.CancelledError:
            # the client went: after a WebSocket session or events had begun, their status
            status = str(request.get(ANSWERED, CLIENT_GONE))
            raise
        finally:
            method = request.method if request.method in METHODS else "other"
            metrics.requests.labels(_route(request), method, status).inc()

    return count_requests


async def note_status(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the status a client was answered with, should its handler be
    cancelled afterwards (a client that hangs up cancels it)."""
    request[ANSWERED] = response.status


async def metrics_page(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus' text format (or OpenMetrics when the scraper asks)."""
    body, content_type = request.app[METRICS].exposition(request.headers.get(hdrs.ACCEPT, ""))
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
