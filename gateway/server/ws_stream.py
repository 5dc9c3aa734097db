"""`GET /stream-audio`: the WebSocket of real-time mode (docs/websocket-protocol.md).

Two tasks per connection: this handler receives frames and control messages, and a worker
runs the session's transcription steps, so a slow step never stops the socket from being
read. A bad message gets an `error` message and the session goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from gateway.core.contract import AsrFailed, AsrRejected, AsrUnavailable
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_input import FrameDecoder, StreamConfig, StreamProtocolError
from gateway.modes.streaming import StreamSession
from gateway.modes.vad import StreamingVad
from gateway.server.access import client_of
from gateway.server.keys import ASR, DRAINING, SETTINGS, STEP_CLOCK, STREAM_VAD, STREAMS
from gateway.server.metrics import METRICS, StreamWatch
from gateway.server.request_context import current_request_id
from gateway.server.settings import Settings

logger = logging.getLogger(__name__)

CLOSE_POLICY = WSCloseCode.POLICY_VIOLATION  # 1008: idle, or the session too long
# A frame shorter than this is not audio to the idle timeout: a sample every 29 s must not
# keep a stream open for nothing
MIN_AUDIO_FRAME_SECONDS = 0.01
CLOSE_BUSY = WSCloseCode.TRY_AGAIN_LATER  # 1013
STREAM_CLIENT = web.ResponseKey("client", str)  # who opened the stream: max_streams_per_client


class _Connection:
    """One socket, its session, and the worker that runs the session's steps."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.backend = request.app[ASR]
        self.clock = request.app[STEP_CLOCK]
        self.vad_scorer = request.app[STREAM_VAD]
        self.config = StreamConfig()
        self.decoder = FrameDecoder(self.config)
        self.session: StreamSession | None = None
        self.stopping = asyncio.Event()  # `stop` came, the client went, or the server drains
        self.worker: asyncio.Task[None] | None = None
        self.model_unavailable = False  # the last step could not reach the model
        self.watch = StreamWatch(request.app[METRICS])  # finals' latency, skipped audio
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        self.watch.sent(message)
        async with self._send_lock:
            await self.ws.send_json(message)

    async def error(self, message: str) -> None:
        await self.send(
            {"type": "error", "message": message, "request_id": current_request_id.get()}
        )

    async def on_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except (json.JSONDecodeError, RecursionError):  # not JSON, or nested beyond Python's stack
            await self.error("a text message must be JSON: config or stop")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "config":
            await self._configure(message)
        elif kind == "stop":
            self.stopping.set()
        else:
            await self.error(f"unknown message type {kind!r}: expected config or stop")

    async def _configure(self, message: dict[str, Any]) -> None:
        if self.session is not None:
            await self.error("config must come before the first audio frame; ignored")
            return
        try:
            self.config = StreamConfig.from_message(message)
        except StreamProtocolError as exc:
            await self.error(f"bad config: {exc}; keeping the previous settings")
            return
        self.decoder = FrameDecoder(self.config)

    @property
    def buffered_seconds(self) -> float:
        return 0.0 if self.session is None else self.session.buffered_seconds

    async def drop_backlog(self) -> None:
        """Keep only the newest window of audio, saying what went (`skipped`)."""
        if self.session is not None:
            for message in self.session.drop_backlog("overload"):
                await self.send(message)

    async def on_audio(self, data: bytes) -> float:
        """Take one frame; how many seconds of audio it held (0 for a bad one)."""
        try:
            samples = self.decoder.decode(data)
        except StreamProtocolError as exc:
            await self.error(str(exc))
            return 0.0
        if self.session is None:
            self.session = StreamSession(
                self.backend,
                self.config,
                min_new_audio_s=self.clock.min_period_s / 2,
                vad=StreamingVad(scorer=self.vad_scorer),
                on_model_seconds=self._model_seconds,
            )
            self.worker = asyncio.create_task(self._run_steps())
        self.session.append(samples)
        self.watch.received(samples.size / SAMPLE_RATE)
        return samples.size / SAMPLE_RATE

    def _model_seconds(self, seconds: float) -> None:
        self.clock.record(seconds)
        self.watch.model_seconds(seconds)

    async def _run_steps(self) -> None:
        """On every beat of the shared clock, a step if enough new audio has come."""
        assert self.session is not None
        while not await self._beat_or_stop():
            if not self.session.step_due:
                continue
            reason = "model_unavailable" if self.model_unavailable else "overload"
            for message in self.session.drop_backlog(reason):
                await self.send(message)
            for message in await self._guarded(self.session.step()):
                await self.send(message)

    async def _beat_or_stop(self) -> bool:
        """Wait for the clock's next beat; True when the stream is stopping instead."""
        beat = asyncio.ensure_future(self.clock.beat())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait((beat, stop), return_when=asyncio.FIRST_COMPLETED)
        for waiter in (beat, stop):
            waiter.cancel()
        await asyncio.gather(beat, stop, return_exceptions=True)
        return self.stopping.is_set()

    async def _guarded(self, step: Any) -> list[dict[str, Any]]:
        """A step's messages; a model that cannot be reached is reported once, and the
        stream goes on: the next steps try again, so it resumes when the model is back."""
        try:
            messages = await step
        except AsrUnavailable as exc:
            if not self.model_unavailable:
                await self.error(f"{exc}; the stream stays open and resumes when it is back")
            self.model_unavailable = True
            return []
        except AsrRejected as exc:
            await self.error(str(exc))
            return []
        except AsrFailed as exc:
            logger.error("the model failed on a stream's step: %s", exc)  # internals: log only
            await self.error("the speech model failed on this audio; the stream goes on")
            return []
        self.model_unavailable = False
        return messages

    async def finish(self) -> None:
        """Flush what is left as final, then `done`."""
        self.stopping.set()
        if self.worker is not None:
            await self.worker
        if self.session is not None:
            for message in await self._guarded(self.session.finish(self.decoder.flush())):
                await self.send(message)
        await self.send({"type": "done"})

    async def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)


async def stream_audio(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    streams = request.app[STREAMS]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=settings.stream_max_frame_bytes)
    await ws.prepare(request)
    client = client_of(request)
    if (refusal := _refusal(streams, client, settings)) is not None:
        logger.info("stream refused for %s: %s", client, refusal)
        request.app[METRICS].refuse_stream(
            "streams_limit" if len(streams) >= settings.max_streams else "client_limit"
        )
        await ws.close(code=CLOSE_BUSY, message=refusal.encode())
        return ws
    ws[STREAM_CLIENT] = client
    streams.add(ws)
    connection = _Connection(request, ws)
    try:
        await _receive(connection, settings, request.app[DRAINING])
    finally:
        # aiohttp may cancel this handler when the client goes: release before awaiting
        streams.discard(ws)
        await connection.cancel()
    return ws


def _refusal(
    streams: weakref.WeakSet[web.WebSocketResponse], client: str, settings: Settings
) -> str | None:
    """Why a new stream of `client` may not open now (closed with 1013), or None."""
    if len(streams) >= settings.max_streams:
        return f"too many streams: the limit is {settings.max_streams}; try again later"
    if sum(ws.get(STREAM_CLIENT) == client for ws in streams) >= settings.max_streams_per_client:
        return (
            f"too many streams from this client: the limit is {settings.max_streams_per_client}; "
            "try again later"
        )
    return None


async def _next_message(
    ws: web.WebSocketResponse, timeout: float, draining: asyncio.Event
) -> WSMessage | None:
    """The client's next message, or None once the server starts shutting down."""
    receive = asyncio.ensure_future(ws.receive(timeout=max(timeout, 0.001)))
    drain = asyncio.ensure_future(draining.wait())
    await asyncio.wait((receive, drain), return_when=asyncio.FIRST_COMPLETED)
    drain.cancel()
    if receive.done():
        return receive.result()
    receive.cancel()
    await asyncio.gather(receive, return_exceptions=True)
    return None


async def _receive(connection: _Connection, settings: Settings, draining: asyncio.Event) -> None:
    ws = connection.ws
    loop = asyncio.get_running_loop()
    idle_s, longest_s = settings.stream_idle_timeout_s, settings.stream_max_session_s
    opened = heard_from = loop.time()  # heard_from: the last audio or message from the client
    while not connection.stopping.is_set():
        if loop.time() - opened >= longest_s:
            await connection.error(f"the stream reached the longest session, {longest_s:g} s")
            await connection.finish()  # what was heard, then done
            await ws.close(code=CLOSE_POLICY, message=b"session too long")
            return
        try:
            deadline = min(heard_from + idle_s, opened + longest_s)
            message = await _next_message(ws, deadline - loop.time(), draining)
        except TimeoutError:
            if loop.time() - heard_from < idle_s:
                continue  # the session's end, handled above
            await connection.error(f"no audio or message for {idle_s:g} s; closing")
            await ws.close(code=CLOSE_POLICY, message=b"idle timeout")
            return
        if message is None:  # shutting down: flush what was heard, then say goodbye
            await connection.finish()
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            return
        if message.type == WSMsgType.BINARY:
            if await connection.on_audio(message.data) >= MIN_AUDIO_FRAME_SECONDS:
                heard_from = loop.time()
            if connection.buffered_seconds > settings.stream_max_buffer_seconds:
                await connection.drop_backlog()  # faster than real time: keep the newest
        elif message.type == WSMsgType.TEXT:
            heard_from = loop.time()
            await connection.on_text(message.data)
        else:  # closed by the client, or a broken connection: nothing to flush to
            logger.info("stream closed by the client (%s)", message.type.name)
            return
    await connection.finish()
    await ws.close()


async def drain_streams(app: web.Application) -> None:
    """On shutdown: every stream flushes its text (`final`, `done`) and closes with 1001;
    those still open after `shutdown_timeout_s` are closed as they are."""
    app[DRAINING].set()
    deadline = asyncio.get_running_loop().time() + app[SETTINGS].shutdown_timeout_s
    while app[STREAMS] and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    for ws in list(app[STREAMS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
