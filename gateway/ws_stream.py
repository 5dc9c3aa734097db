"""`GET /stream-audio`: the WebSocket of real-time mode (protocol in the README).

Two tasks per connection: this handler receives frames and control messages, and a worker
runs the session's transcription steps, so a slow step never stops the socket from being
read. A bad message gets an `error` message and the session goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.keys import ASR, SETTINGS, STREAMS
from gateway.streaming import FrameDecoder, StreamConfig, StreamProtocolError, StreamSession
from gateway.triton_backend import AsrRejected, AsrUnavailable

logger = logging.getLogger(__name__)

CLOSE_IDLE = WSCloseCode.POLICY_VIOLATION  # 1008
CLOSE_BUSY = WSCloseCode.TRY_AGAIN_LATER  # 1013


class _Connection:
    """One socket, its session, and the worker that runs the session's steps."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.backend = request.app[ASR]
        self.step_seconds = request.app[SETTINGS].stream_step_seconds
        self.config = StreamConfig()
        self.decoder = FrameDecoder(self.config)
        self.session: StreamSession | None = None
        self.audio_arrived = asyncio.Event()
        self.stopping = False
        self.worker: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            await self.ws.send_json(message)

    async def error(self, message: str) -> None:
        await self.send({"type": "error", "message": message})

    async def on_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            await self.error("a text message must be JSON: config or stop")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "config":
            await self._configure(message)
        elif kind == "stop":
            self.stopping = True
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

    async def on_audio(self, data: bytes) -> None:
        try:
            samples = self.decoder.decode(data)
        except StreamProtocolError as exc:
            await self.error(str(exc))
            return
        if self.session is None:
            self.session = StreamSession(self.backend, self.config, step_seconds=self.step_seconds)
            self.worker = asyncio.create_task(self._run_steps())
        self.session.append(samples)
        self.audio_arrived.set()

    async def _run_steps(self) -> None:
        assert self.session is not None
        while not self.stopping:
            await self.audio_arrived.wait()
            self.audio_arrived.clear()
            while self.session.step_due and not self.stopping:
                for message in await self._guarded(self.session.step()):
                    await self.send(message)

    async def _guarded(self, step: Any) -> list[dict[str, Any]]:
        try:
            return await step
        except (AsrUnavailable, AsrRejected) as exc:
            await self.error(str(exc))
            return []

    async def finish(self) -> None:
        """Flush what is left as final, then `done`."""
        self.stopping = True
        self.audio_arrived.set()
        if self.worker is not None:
            await self.worker
        if self.session is not None:
            for message in await self._guarded(self.session.finish(self.decoder)):
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
    if len(streams) >= settings.max_streams:
        await ws.close(
            code=CLOSE_BUSY,
            message=f"too many streams: the limit is {settings.max_streams}; try again later".encode(),
        )
        return ws
    streams.add(ws)
    connection = _Connection(request, ws)
    try:
        await _receive(connection, settings.stream_idle_timeout_s)
    finally:
        # aiohttp may cancel this handler when the client goes: release before awaiting
        streams.discard(ws)
        await connection.cancel()
    return ws


async def _receive(connection: _Connection, idle_timeout: float) -> None:
    ws = connection.ws
    while not connection.stopping:
        try:
            message = await ws.receive(timeout=idle_timeout)
        except TimeoutError:
            await connection.error(f"no audio or message for {idle_timeout:g} s; closing")
            await ws.close(code=CLOSE_IDLE, message=b"idle timeout")
            return
        if message.type == WSMsgType.BINARY:
            await connection.on_audio(message.data)
        elif message.type == WSMsgType.TEXT:
            await connection.on_text(message.data)
        else:  # closed by the client, or a broken connection: nothing to flush to
            logger.info("stream closed by the client (%s)", message.type.name)
            return
    await connection.finish()
    await ws.close()


async def close_streams(app: web.Application) -> None:
    """On shutdown: tell every client the server is going away."""
    for ws in list(app[STREAMS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
