"""`GET /stream-audio`: the WebSocket of real-time mode (docs/websocket-protocol.md).

Two tasks per connection: this handler receives frames and control messages, and a worker
runs the session's transcription steps, so a slow step never stops the socket from being
read. A bad message gets an `error` message and the session goes on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_input import FrameDecoder, StreamConfig, StreamProtocolError
from gateway.modes.stream_speakers import StreamSpeakers
from gateway.modes.streaming import PAUSE_SECONDS, StreamSession
from gateway.modes.turns import SpeechStarted, TurnConfig, TurnDetector
from gateway.modes.vad import StreamingVad, VadConfig
from gateway.server.keys import STEP_CLOCK, STREAM_VAD, transcriber
from gateway.server.live import ModelCalls, TurnLooks, first_of, serve_live
from gateway.server.metrics import METRICS, StreamWatch
from gateway.server.request_context import current_request_id

# `speech_started` / `speech_stopped`: the stream's own detector threshold, and the pause
# after which the words before it become final
SPEECH_TURNS = TurnConfig(
    threshold=VadConfig.threshold, prefix_padding_s=0.0, silence_s=PAUSE_SECONDS
)


class _Connection:
    """One socket, its session, and the worker that runs the session's steps."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.backend = transcriber(request.app)
        self.clock = request.app[STEP_CLOCK]
        self.beats = self.clock.follower()
        self.vad_scorer = request.app[STREAM_VAD]
        self.config = StreamConfig()
        self.decoder = FrameDecoder(self.config)
        self.session: StreamSession | None = None
        self.speakers: StreamSpeakers | None = None  # with `diarize`: who speaks each final
        self.stopping = asyncio.Event()  # `stop` came, the client went, or the server drains
        self.worker: asyncio.Task[None] | None = None
        self.calls = ModelCalls(lambda message, _code: self.error(message))
        self.watch = StreamWatch(request.app[METRICS])  # finals' latency, skipped audio
        self.turns = TurnDetector(SPEECH_TURNS)
        self.looks: TurnLooks | None = None  # with `speech_events`: the turns' detection
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        self.watch.sent(message)
        async with self._send_lock:
            await self.ws.send_json(message)

    async def deliver(self, messages: list[dict[str, Any]]) -> None:
        """Send a step's messages, each final with its speaker when the stream diarizes."""
        if self.speakers is not None:
            messages = await self.speakers.label(messages)
        for message in messages:
            await self.send(message)

    async def error(self, message: str) -> None:
        await self.send(
            {"type": "error", "message": message, "request_id": current_request_id.get()}
        )

    async def start(self) -> None:
        """The protocol says nothing until audio comes."""

    async def on_text(self, data: str) -> float:
        try:
            message = json.loads(data)
        except (json.JSONDecodeError, RecursionError):  # not JSON, or nested beyond Python's stack
            await self.error("a text message must be JSON: config or stop")
            return 0.0
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "config":
            await self._configure(message)
        elif kind == "stop":
            self.stopping.set()
        else:
            await self.error(f"unknown message type {kind!r}: expected config or stop")
        return 0.0

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
    def busy(self) -> bool:
        return False  # until `stop`, the client is expected to send; after it, the flush is

    @property
    def buffered_seconds(self) -> float:
        return 0.0 if self.session is None else self.session.buffered_seconds

    async def drop_backlog(self) -> None:
        """Keep only the newest window of audio, saying what went (`skipped`)."""
        if self.session is not None:
            await self.deliver(self.session.drop_backlog("overload"))

    async def on_binary(self, data: bytes) -> float:
        """Take one frame; how many seconds of audio it held (0 for a bad one)."""
        try:
            samples = self.decoder.decode(data)
        except StreamProtocolError as exc:
            await self.error(str(exc))
            return 0.0
        if self.session is None:
            self.session = StreamSession(
                self.calls.reading(self.backend),
                self.config,
                min_new_audio_s=self.clock.min_period_s / 2,
                vad=StreamingVad(scorer=self.vad_scorer),
                on_model_seconds=self._model_seconds,
            )
            if self.config.diarize:
                self.speakers = StreamSpeakers(self.backend)
            if self.config.speech_events:
                self.looks = TurnLooks(self._speech_events)
            self.worker = asyncio.create_task(self._run_steps())
        self.session.append(samples)
        if self.speakers is not None:
            self.speakers.append(samples)
        self.watch.received(samples.size / SAMPLE_RATE)
        if self.looks is not None:
            self.looks.heard()
        return samples.size / SAMPLE_RATE

    async def _speech_events(self) -> None:
        assert self.session is not None
        for change in await self.turns.update(self.session.audio):
            if isinstance(change, SpeechStarted):
                await self.send({"type": "speech_started", "start": round(change.at, 3)})
            else:
                await self.send({"type": "speech_stopped", "end": round(change.at, 3)})

    def _model_seconds(self, seconds: float) -> None:
        self.clock.record(seconds)
        self.watch.model_seconds(seconds)

    async def _run_steps(self) -> None:
        """On every beat of the shared clock, a step if enough new audio has come. A step
        still waiting for the model when the stream stops is abandoned: the read at the end
        reads its audio again anyway, and would otherwise queue behind it (a whole execution
        under load: 8 streams ending together waited up to 2 s for steps of 12 s buffers)."""
        assert self.session is not None
        while not await self._beat_or_stop():
            if not self.session.step_due:
                continue
            await self.deliver(self.session.drop_backlog(self.calls.skip_reason))
            step = asyncio.ensure_future(self.calls.guarded(self.session.step()))
            await first_of(step, self.stopping.wait())
            if step.cancelled():
                return
            await self.deliver(step.result())

    async def _beat_or_stop(self) -> bool:
        """Wait for the clock's next beat; True when the stream is stopping instead."""
        await first_of(self.beats.wait(), self.stopping.wait())
        return self.stopping.is_set()

    async def finish(self) -> None:
        """Flush what is left as final, then `done`."""
        if self.looks is not None:
            await self.looks.close()  # its speech events before `done`
        self.stopping.set()
        if self.worker is not None:
            await self.worker
        if self.session is not None:
            rest = self.decoder.flush()
            if self.speakers is not None:
                self.speakers.append(rest)
            await self.deliver(await self.calls.guarded(self.session.finish(rest)))
        await self.send({"type": "done"})

    async def cancel(self) -> None:
        if self.looks is not None:
            await self.looks.cancel()
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)


async def stream_audio(request: web.Request) -> web.WebSocketResponse:
    return await serve_live(request, lambda ws: _Connection(request, ws))
