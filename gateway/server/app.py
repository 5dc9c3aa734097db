"""The gateway's aiohttp application: `create_app(settings)` is what `hermes serve` and the
integration tests run; `create_app(settings, backend=...)` serves any `ModelBackend` instead of
the Triton pool (the route and protocol tests give it a scripted one)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.backend.triton_pool import TritonPool
from gateway.core.contract import ModelBackend
from gateway.modes.audio import most_decoded_bytes
from gateway.modes.file_work import WindowSlots
from gateway.modes.step_clock import StepClock
from gateway.modes.vad import StreamScorer
from gateway.server import (
    access,
    api_docs,
    http_files,
    http_models,
    live,
    metrics,
    realtime,
    ws_stream,
)
from gateway.server.admission import (
    AudioBudget,
    RefusalRecord,
    UploadAdmission,
    client_share_bytes,
)
from gateway.server.cors import Cors
from gateway.server.errors import RETRY_AFTER_S, ApiError, error_middleware
from gateway.server.heap import heap_trimming
from gateway.server.keys import (
    ASR,
    DRAINING,
    FILE_WORK,
    SETTINGS,
    STEP_CLOCK,
    STREAM_VAD,
    STREAMS,
)
from gateway.server.logs import AccessLogger, configure
from gateway.server.loop_lag import loop_lag_watching
from gateway.server.request_context import add_request_id_header, request_id_middleware
from gateway.server.settings import Settings, load
from gateway.server.uploads import MULTIPART_OVERHEAD_BYTES

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The live page's files, by name: a flat directory, so no path from a URL ever reaches the disk
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}
# Open without an API key: the probes, the live page (which hands the key it was opened
# with, `/?token=...`, on to /stream-audio), and the API's documents and docs page
PUBLIC_RESOURCES = frozenset({"/", "/static/{name}", "/healthz", "/readyz"}) | api_docs.PUBLIC
# where an API key may come as ?token= (a browser cannot set a WebSocket's headers)
WEBSOCKET_RESOURCES = frozenset({"/stream-audio", "/v1/realtime"})
# How the server runs the app (`serve`, `benchmarks.stack`, the tests): a handler whose client
# hung up is cancelled, and the work it started with it (ffmpeg, a file's windows at Triton);
# otherwise an SDK's time-out-and-retry pays for the whole file twice.
SERVER_OPTIONS: dict[str, Any] = {"handler_cancellation": True}


async def triton_pool(app: web.Application) -> AsyncIterator[None]:
    """The Triton replicas for the whole process: one gRPC channel each, closed on shutdown."""
    settings = app[SETTINGS]
    pool = TritonPool(
        settings.triton_endpoints,
        settings.triton_model,
        timeout_s=settings.triton_timeout_s,
        ready_timeout_s=settings.triton_ready_timeout_s,
        probe_interval_s=settings.triton_probe_interval_s,
        resolve_interval_s=settings.triton_resolve_interval_s,
    )
    await pool.start()
    app[ASR] = pool
    yield
    await pool.close()


def given_backend(backend: ModelBackend) -> Callable[[web.Application], AsyncIterator[None]]:
    """A backend the caller made and closes itself."""

    async def install(app: web.Application) -> AsyncIterator[None]:
        app[ASR] = backend
        yield

    return install


async def healthz(request: web.Request) -> web.Response:
    """The process is alive (says nothing about Triton)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """At least one Triton replica answers with the model loaded: send traffic here. Where
    the backend runs, and its replicas' counters, only for a caller with a key when keys are
    on (the probe itself needs none)."""
    asr = request.app[ASR]
    about = asr.describe() if access.is_trusted(request, request.app[SETTINGS]) else {}
    if not await asr.is_ready():
        raise ApiError(
            503,
            f"model {about['model']!r} is not ready ({about['backend']})"
            if about
            else "the speech model is not ready",
            "model_unavailable",
            retry_after=RETRY_AFTER_S,
        )
    return web.json_response({"status": "ready", **about})


async def live_page(request: web.Request) -> web.FileResponse:
    """The microphone page: streams to `/stream-audio` and shows the text live."""
    return web.FileResponse(STATIC_FILES["index.html"])


async def static_file(request: web.Request) -> web.FileResponse:
    """A file of the live page (a JSON 404 for any other name, like every other error)."""
    if (path := STATIC_FILES.get(request.match_info["name"])) is None:
        raise ApiError(404, f"no static file {request.match_info['name']!r}", "not_found")
    return web.FileResponse(path)


def create_app(settings: Settings, backend: ModelBackend | None = None) -> web.Application:
    cors = Cors(settings.cors_allowed_origins)
    counters = metrics.GatewayMetrics()
    app = web.Application(
        # Outermost first: every answer is counted, the request id spans everything, errors
        # are JSON with that id, and CORS preflights are answered before Origin and API key
        # are checked.
        middlewares=[
            metrics.middleware(counters),
            request_id_middleware,
            error_middleware,
            cors.preflight,
            *access.middlewares(settings, public=PUBLIC_RESOURCES, websockets=WEBSOCKET_RESOURCES),
        ],
        client_max_size=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    app.on_response_prepare.extend([add_request_id_header, cors.add_headers, metrics.note_status])
    app[SETTINGS] = settings
    streams: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
    app[STREAMS] = streams
    app[FILE_WORK] = WindowSlots(
        lambda: settings.file_windows_beside_streams if streams else sys.maxsize
    )
    app[http_models.FIRST_SEEN] = {}
    app[metrics.METRICS] = counters
    counters.count_streams(lambda: len(streams))
    counters.watch_backend(lambda: app[ASR].describe() if ASR in app else {})
    app.cleanup_ctx.extend(
        [
            triton_pool if backend is None else given_backend(backend),
            heap_trimming,
            loop_lag_watching,
        ]
    )
    app[DRAINING] = asyncio.Event()
    app[STEP_CLOCK] = StepClock(settings.stream_min_step_seconds, settings.stream_step_seconds)
    app[STREAM_VAD] = StreamScorer()
    app.on_shutdown.append(live.drain_streams)
    uploads = UploadAdmission(
        settings.max_uploads_running,
        settings.max_uploads_waiting,
        settings.max_uploads_per_client,
        AudioBudget(
            budget_bytes := int(settings.max_decoded_audio_mb * 2**20),
            client_share_bytes(budget_bytes, most_decoded_bytes(settings.max_audio_seconds)),
            counters.refuse_upload,
        ),
        RefusalRecord(
            settings.max_refused_uploads_per_client,
            settings.refused_uploads_window_s,
            time.monotonic,
        ),
        refused=counters.refuse_upload,
        waited=counters.admission_wait.observe,
    )
    counters.count_uploads(lambda: uploads.admitted)
    app.add_routes(
        [
            web.get("/", live_page),
            web.get("/static/{name}", static_file),
            web.get("/stream-audio", ws_stream.stream_audio),
            web.get("/v1/realtime", realtime.realtime),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics.metrics_page),
            web.post("/transcribe", uploads.guard(http_files.transcribe)),
            web.post("/upload", uploads.guard(http_files.transcribe)),
            web.post("/v1/audio/transcriptions", uploads.guard(http_files.openai_transcriptions)),
            web.post("/v1/audio/translations", uploads.guard(http_files.openai_translations)),
            web.get("/v1/models", http_models.list_models),
            web.get("/v1/models/{model}", http_models.retrieve_model),
        ]
    )
    api_docs.install(app, PUBLIC_RESOURCES)
    return app


def startup(argv: list[str] | None) -> Settings | None:
    """Settings from the environment and flags, logging set up; None (after saying why)
    when the settings are invalid."""
    try:
        settings = load(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    configure(settings.log_level, settings.log_format)
    logger.info(
        "with these settings the gateway holds at most %.0f MiB (uploads, decoded audio, "
        "streams; README, Security and limits)",
        settings.worst_case_memory_mb,
    )
    return settings


def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM, then shut it down gracefully: stop accepting,
    let live streams flush (`final`, `done`) and uploads finish, for at most
    `shutdown_timeout_s`, then close the Triton channels."""
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_timeout_s,
        access_log_class=AccessLogger,
        **SERVER_OPTIONS,
    )


def main(argv: list[str] | None = None) -> int:
    """`hermes serve`: run the gateway against an already running Triton."""
    if (settings := startup(argv)) is None:
        return 2
    serve(settings)
    return 0
