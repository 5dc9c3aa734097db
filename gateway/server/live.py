"""What every live-transcription WebSocket shares, whatever its protocol (`/stream-audio`,
the Realtime API): the stream limits checked before a session opens, the receive loop with
its idle timeout and longest session, and the flush of every stream when the server stops.

A protocol plugs in as a `LiveConnection`: it turns the client's messages into audio and
events and runs its session's steps; this module decides when it opens, ends and closes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from gateway.core.contract import (
    AsrBusy,
    AsrError,
    AsrFailed,
    AsrRejected,
    AsrUnavailable,
    Priority,
    TranscribeOptions,
    WindowReader,
    WindowResult,
)
from gateway.server.access import client_of
from gateway.server.keys import DRAINING, SETTINGS, STREAMS
from gateway.server.metrics import METRICS
from gateway.server.settings import Settings

logger = logging.getLogger(__name__)

CLOSE_POLICY = WSCloseCode.POLICY_VIOLATION  # 1008: idle, or the session too long
CLOSE_BUSY = WSCloseCode.TRY_AGAIN_LATER  # 1013
# A frame shorter than this is not audio to the idle timeout: a sample every 29 s must not
# keep a stream open for nothing
MIN_AUDIO_FRAME_SECONDS = 0.01
STREAM_CLIENT = web.ResponseKey("client", str)  # who opened the stream: max_streams_per_client
RECEIVING = web.ResponseKey("receiving", asyncio.Timeout)  # the wait for a message, if any


class LiveConnection(Protocol):
    ws: web.WebSocketResponse
    stopping: asyncio.Event  # the client ended the session, or the server drains

    @property
    def buffered_seconds(self) -> float:
        """Audio held that the model has not read yet."""

    @property
    def busy(self) -> bool:
        """Work the client is waiting for is still under way: a quiet client is not idle."""

    async def start(self) -> None:
        """The session is open: say so, if the protocol does."""

    async def on_binary(self, data: bytes) -> float:
        """A binary message; how many seconds of audio it held."""

    async def on_text(self, data: str) -> float:
        """A text message; how many seconds of audio it held."""

    async def drop_backlog(self) -> None:
        """Keep only the newest audio, reporting what went."""

    async def error(self, message: str) -> None:
        """Tell the client something went wrong; the session goes on."""

    async def finish(self) -> None:
        """Transcribe what is left and say the session is done."""

    async def cancel(self) -> None:
        """The client is gone: stop the session's work without flushing."""


Report = Callable[[str, str], Awaitable[None]]  # (message, code) → the client is told


class ModelCalls:
    """A live session's calls to the model, and how their failures reach the client: a model
    that cannot be reached is said once, and the session goes on (its next steps try again,
    so it resumes when the model is back); a refusal each time; a fault of the model as a
    plain message, its details in the log only. A busy model (its queue full) is load,
    not a failure: nothing is said."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.unavailable = False  # the model's last call could not reach it
        self._said = False  # the client was told of this outage

    def reading(self, backend: WindowReader) -> WindowReader:
        """`backend` as the session's steps and reads are to call it, each call noting
        whether it reached the model. (The calls' messages cannot say so: a step over
        silence calls no model, and a read to the end reports the model away as `skipped`.)"""
        return _Noting(backend, self)

    def note(self, reached: bool) -> None:
        """Whether a call just reached the model (`_Noting` tells)."""
        self.unavailable = not reached
        if reached:
            self._said = False  # the outage, if any, is over

    @property
    def skip_reason(self) -> str:
        """Why audio dropped before a step now goes unheard (a `skipped` reason)."""
        return "model_unavailable" if self.unavailable else "overload"

    async def guarded(self, call: Awaitable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The call's messages; none when it failed (and the client was told)."""
        try:
            return await call
        except AsrBusy:
            # up but overloaded: nothing to say; the audio waits for the next step, or goes
            # as `overload` when the stream falls too far behind
            return []
        except AsrUnavailable as exc:
            if not self._said:
                await self.report(
                    f"{exc}; the stream stays open and resumes when it is back",
                    "model_unavailable",
                )
                self._said = True
            return []
        except AsrRejected as exc:
            await self.report(str(exc), "rejected")
            return []
        except AsrFailed as exc:
            logger.error("the model failed on a live stream: %s", exc)  # internals: log only
            await self.report(
                "the speech model failed on this audio; the stream goes on", "model_error"
            )
            return []


class _Noting:
    """A `WindowReader` that tells its `ModelCalls` whether each call reached the model:
    an answer, a full queue (`AsrBusy`), a refusal or a fault did; `AsrUnavailable`
    otherwise did not."""

    def __init__(self, backend: WindowReader, calls: ModelCalls) -> None:
        self.backend = backend
        self.calls = calls

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        try:
            result = await self.backend.transcribe(audio, options, priority=priority)
        except AsrError as exc:
            self.calls.note(isinstance(exc, AsrBusy) or not isinstance(exc, AsrUnavailable))
            raise
        self.calls.note(True)
        return result


class TurnLooks:
    """A connection's turn detection, beside its receive path: `heard()` after audio is
    appended, and `look` (which awaits the voice detector's rounds, `StreamBuffer.catch_up`)
    runs in a task of its own. The client's next frames are read while a look waits, and
    the audio heard meanwhile is looked at, all of it, by the next look. (Each frame used to
    wait for its look: a session took in one frame per round or two of the detector, and
    with 192 Realtime sessions on 2 cores fell 6 s behind real time.) A look that fails is
    logged, and the next one goes on."""

    def __init__(self, look: Callable[[], Awaitable[None]]) -> None:
        self._look = look
        self._heard = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run())

    def heard(self) -> None:
        self._heard.set()

    async def _run(self) -> None:
        while not (self._closing and not self._heard.is_set()):
            await self._heard.wait()
            self._heard.clear()
            try:
                await self._look()
            except Exception:
                logger.exception("turn detection failed on a live stream")

    async def close(self) -> None:
        """A last look at all the audio heard (its events sent), then stop."""
        self._closing = True
        self._heard.set()
        if not self._task.done():
            await self._task

    async def cancel(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def first_of(*waits: Awaitable[Any]) -> None:
    """Wait until any of `waits` is done; the others are cancelled."""
    waiters = [asyncio.ensure_future(wait) for wait in waits]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def serve_live(
    request: web.Request, connect: Callable[[web.WebSocketResponse], LiveConnection]
) -> web.WebSocketResponse:
    """Open a live session on `request`'s WebSocket (or close it with 1013 when the stream
    limits are reached) and run it until it ends."""
    settings = request.app[SETTINGS]
    streams = request.app[STREAMS]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=max_message_bytes(request))
    await ws.prepare(request)
    client = client_of(request)
    if (refusal := stream_refusal(streams, client, settings)) is not None:
        logger.info("stream refused for %s: %s", client, refusal)
        request.app[METRICS].refuse_stream(
            "streams_limit" if len(streams) >= settings.max_streams else "client_limit"
        )
        await ws.close(code=CLOSE_BUSY, message=refusal.encode())
        return ws
    ws[STREAM_CLIENT] = client
    streams.add(ws)
    connection = connect(ws)
    try:
        await connection.start()
        await _receive(connection, settings, request.app[DRAINING])
    finally:
        # aiohttp may cancel this handler when the client goes: release before awaiting
        streams.discard(ws)
        await connection.cancel()
    return ws


def max_message_bytes(request: web.Request) -> int:
    """aiohttp's `max_msg_size` for a live socket: one more than the largest message it takes
    (aiohttp refuses a plain message of `max_msg_size` bytes), a frame of audio, or that frame
    in base64 inside a JSON event (the Realtime API) with room for the event around it."""
    frame = request.app[SETTINGS].stream_max_frame_bytes
    return 1 + (frame if request.path == "/stream-audio" else -(-frame // 3) * 4 + 4096)


def stream_refusal(
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
    ws: web.WebSocketResponse, deadline: float, draining: asyncio.Event
) -> WSMessage | None:
    """The client's next message (TimeoutError at the loop time `deadline`), or None once the
    server starts shutting down: `drain_streams` ends a wait by moving its deadline to now.
    One timeout per message, no task: a Realtime client sends ten messages a second."""
    # A message already buffered comes back without suspending: a client flooding tiny
    # frames would hold the event loop until its backlog is read, and starve everyone else
    await asyncio.sleep(0)
    if draining.is_set():
        return None
    try:
        async with asyncio.timeout_at(deadline) as timeout:
            ws[RECEIVING] = timeout
            return await ws.receive()
    except TimeoutError:
        if draining.is_set():
            return None
        raise
    finally:
        ws.pop(RECEIVING, None)


async def _receive(connection: LiveConnection, settings: Settings, draining: asyncio.Event) -> None:
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
            message = await _next_message(ws, deadline, draining)
        except TimeoutError:
            if loop.time() - heard_from < idle_s:
                continue  # the session's end, handled above
            if connection.busy:
                heard_from = loop.time()  # waiting for its transcripts, not idle
                continue
            await connection.error(f"no audio or message for {idle_s:g} s; closing")
            await ws.close(code=CLOSE_POLICY, message=b"idle timeout")
            return
        if message is None:  # shutting down: flush what was heard, then say goodbye
            await connection.finish()
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            return
        if message.type == WSMsgType.BINARY:
            if await connection.on_binary(message.data) >= MIN_AUDIO_FRAME_SECONDS:
                heard_from = loop.time()
        elif message.type == WSMsgType.TEXT:
            audio_s = await connection.on_text(message.data)
            if audio_s >= MIN_AUDIO_FRAME_SECONDS or audio_s == 0.0:
                heard_from = loop.time()  # an event, or real audio: not a 1-sample append
        else:  # closed by the client, or a broken connection: nothing to flush to
            logger.info("stream closed by the client (%s)", message.type.name)
            return
        if connection.buffered_seconds > settings.stream_max_buffer_seconds:
            await connection.drop_backlog()  # faster than real time: keep the newest
    await connection.finish()
    await ws.close()


async def drain_streams(app: web.Application) -> None:
    """On shutdown: every stream flushes its text and closes with 1001; those still open
    after `shutdown_timeout_s` are closed as they are."""
    app[DRAINING].set()
    streams = app[STREAMS]
    loop = asyncio.get_running_loop()
    for ws in streams:  # wake each receive loop now, not at its next message
        if (receiving := ws.get(RECEIVING)) is not None:
            receiving.reschedule(loop.time())
    deadline = loop.time() + app[SETTINGS].shutdown_timeout_s
    while streams and loop.time() < deadline:
        await asyncio.sleep(0.1)
    for ws in list(streams):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
