"""`GET /v1/realtime?intent=transcription`: OpenAI's Realtime API for live transcription
(docs/realtime.md), over the same machinery as `/stream-audio`.

Each turn of speech is a conversation item with a live stream of its own (`StreamSession`):
its steps run on the shared beat, batched in Triton with every other stream, and the words
they commit become `...transcription.delta` events as they are agreed, so a client sees the
text while the person is still speaking. A turn ends at the voice detector's pause (server
VAD) or at the client's `input_audio_buffer.commit`; its rest is then read to the end, as
`/stream-audio` reads a stream at `stop`, and `...transcription.completed` carries the whole
transcript: the item's deltas, concatenated. Completed items go out in order.

With `?diarize=true` (hermes' own: OpenAI's Realtime API names no speakers), `completed` also
carries `speaker`, a label that stays the same for one voice for the life of the session: the
item's audio (up to its last minute) goes to the speaker model and is clustered online
against the voices heard so far, as `/stream-audio` labels its finals.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import deque
from typing import Any

import numpy as np
from aiohttp import web

from gateway.core.contract import AsrError
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_input import FrameDecoder, StreamProtocolError
from gateway.modes.stream_speakers import StreamSpeakers
from gateway.modes.streaming import StreamSession
from gateway.modes.turns import SpeechStarted, TurnDetector
from gateway.modes.vad import StreamingVad
from gateway.server.errors import ApiError
from gateway.server.http_models import ALIAS, check_model, model_not_found
from gateway.server.keys import SETTINGS, STEP_CLOCK, STREAM_VAD, transcriber
from gateway.server.live import ModelCalls, TurnLooks, first_of, serve_live
from gateway.server.metrics import METRICS, StreamWatch
from gateway.server.openai_options import flag
from gateway.server.realtime_events import (
    RealtimeConfig,
    RealtimeEventError,
    error_event,
    event,
    new_id,
)

MIN_COMMIT_SECONDS = 0.1  # OpenAI refuses to commit less audio than this
SESSION_UPDATES = {"session.update": False, "transcription_session.update": True}  # → beta


class _Turn:
    """One conversation item: the audio since the last commit, and the text sent for it."""

    def __init__(
        self,
        item_id: str,
        base_s: float,
        session: StreamSession,
        config: RealtimeConfig,
        watch: StreamWatch,
    ):
        self.item_id = item_id
        self.watch = watch  # finals' latency, skipped audio, audio seconds (gateway metrics)
        self.base_s = base_s  # where the turn starts in the session's audio
        self.session = session
        self.detector = None if config.turn is None else TurnDetector(config.turn)
        self.transcript = ""  # the deltas sent, concatenated
        self.cleared = False  # the client dropped the rest of its audio: nothing more to read
        self.skipped: list[dict[str, Any]] = []  # audio of the turn the model never heard

    @property
    def seconds(self) -> float:
        return self.session.audio.received

    def ms(self, turn_time: float) -> int:
        return round((self.base_s + turn_time) * 1000)


class _RealtimeConnection:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, diarize: bool) -> None:
        self.ws = ws
        self.backend = transcriber(request.app)
        # with `diarize`: the session's audio, by session time, for the speaker of each item
        self.speakers = StreamSpeakers(self.backend) if diarize else None
        self.clock = request.app[STEP_CLOCK]
        self.beats = self.clock.follower()
        self.vad_scorer = request.app[STREAM_VAD]
        self.metrics = request.app[METRICS]
        self.max_buffer_s = request.app[SETTINGS].stream_max_buffer_seconds
        self.session_id = new_id("sess")
        self.config = RealtimeConfig()
        self.beta = False  # the client speaks the older transcription_session.* events
        self.decoder = FrameDecoder(self.config.stream_config())
        self.audio_seen = False  # the format is fixed once audio has come
        self.calls = ModelCalls(self.error)
        self.turn = self._new_turn(0.0)
        self.previous_item_id: str | None = None
        self.committed: deque[_Turn] = deque()  # ended, waiting to be completed in order
        self.completing = False  # a committed turn is being read to its end
        self.stopping = asyncio.Event()  # the server drains (a client just hangs up)
        self.wake = asyncio.Event()  # a turn was committed
        self.worker = asyncio.create_task(self._run())
        self.looks = TurnLooks(self._detect_turns)  # server VAD, beside the receive path
        self._send_lock = asyncio.Lock()

    def _new_turn(self, base_s: float) -> _Turn:
        watch = StreamWatch(self.metrics)

        def model_seconds(seconds: float) -> None:
            self.clock.record(seconds)
            watch.model_seconds(seconds)

        session = StreamSession(
            self.calls.reading(self.backend),
            self.config.stream_config(),
            min_new_audio_s=self.clock.min_period_s / 2,
            vad=StreamingVad(scorer=self.vad_scorer),
            on_model_seconds=model_seconds,
            logprobs=self.config.logprobs,
        )
        return _Turn(new_id("item"), base_s, session, self.config, watch)

    async def send(self, *messages: dict[str, Any]) -> None:
        """The messages, in order, with no other message between them."""
        if self.ws.closed:
            return
        async with self._send_lock:
            for message in messages:
                await self.ws.send_json(message)

    async def start(self) -> None:
        await self.send(event("session.created", session=self._describe()))

    def _describe(self) -> dict[str, Any]:
        return self.config.describe(self.session_id, self.beta)

    # -- the client's events -------------------------------------------------------------

    async def error(self, message: str, code: str = "server_error") -> None:
        await self.send(
            event("error", error={"type": "server_error", "code": code, "message": message})
        )

    async def on_binary(self, data: bytes) -> float:
        await self._refuse(
            RealtimeEventError(
                "Send audio as input_audio_buffer.append events (base64), not binary messages.",
                "invalid_message",
            ),
            None,
        )
        return 0.0

    async def on_text(self, data: str) -> float:
        try:
            message = json.loads(data)
        except (json.JSONDecodeError, RecursionError):
            await self._refuse(RealtimeEventError("Invalid JSON.", "invalid_json"), None)
            return 0.0
        if not isinstance(message, dict):
            await self._refuse(
                RealtimeEventError("An event is a JSON object.", "invalid_event"), None
            )
            return 0.0
        client_event_id = (
            message.get("event_id") if isinstance(message.get("event_id"), str) else None
        )
        try:
            return await self._dispatch(message)
        except RealtimeEventError as exc:
            await self._refuse(exc, client_event_id)
            return 0.0

    async def _refuse(self, exc: RealtimeEventError, client_event_id: str | None) -> None:
        await self.send(error_event(exc, client_event_id))

    async def _dispatch(self, message: dict[str, Any]) -> float:
        kind = message.get("type")
        if kind in SESSION_UPDATES:
            await self._update(message.get("session"), SESSION_UPDATES[kind])
        elif kind == "input_audio_buffer.append":
            return await self._append(message.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self._commit_by_client()
        elif kind == "input_audio_buffer.clear":
            await self._clear()
        else:
            raise RealtimeEventError(
                f"Invalid value for 'type': {kind!r} is not an event of a transcription session "
                "(session.update, input_audio_buffer.append, .commit or .clear).",
                "invalid_value",
                "type",
            )
        return 0.0

    async def _update(self, session: Any, beta: bool) -> None:
        config = self.config.updated(session, beta)
        if self.audio_seen and (config.format, config.sample_rate) != (
            self.config.format,
            self.config.sample_rate,
        ):
            raise RealtimeEventError(
                "The audio format cannot change once audio has been sent.",
                "invalid_value",
                "session.audio.input.format",
            )
        if config.model != self.config.model:
            await self._check_model(config.model, beta)
        self.config, self.beta = config, beta
        if not self.audio_seen:
            self.decoder = FrameDecoder(config.stream_config())
            self.turn = self._new_turn(0.0)
        # transcription and turn settings apply from the next turn on
        name = "transcription_session.updated" if beta else "session.updated"
        await self.send(event(name, session=self._describe()))

    async def _check_model(self, name: str, beta: bool) -> None:
        """A transcription model the server does not serve is refused, as the HTTP routes
        refuse it; when the backend cannot say what it serves, the name is taken."""
        try:
            served = await self.backend.served_model()
        except AsrError:
            return
        if name not in (served.weights, ALIAS):
            param = "input_audio_transcription" if beta else "audio.input.transcription"
            refusal = model_not_found(name, served)
            raise RealtimeEventError(refusal.message, refusal.code, f"session.{param}.model")

    async def _append(self, audio: Any) -> float:
        if not isinstance(audio, str):
            raise RealtimeEventError(
                "Missing required parameter: 'audio' (base64-encoded audio).",
                "missing_required_parameter",
                "audio",
            )
        try:
            data = base64.b64decode(audio, validate=True)
            samples = self.decoder.decode(data)
        except binascii.Error:
            raise RealtimeEventError(
                "Invalid value for 'audio': not base64.", "invalid_value", "audio"
            ) from None
        except StreamProtocolError as exc:
            raise RealtimeEventError(str(exc), "invalid_value", "audio") from None
        self.audio_seen = True
        self._hear(samples)
        self.turn.watch.received(samples.size / SAMPLE_RATE)
        if self.turn.detector is not None:
            self.looks.heard()
        return samples.size / SAMPLE_RATE

    async def _detect_turns(self) -> None:
        """Speech started and stopped in the current turn; at a stop, the turn is committed
        there and what came after it begins the next (several at once when a client sends
        faster than real time). This runs beside the receive path (`TurnLooks`): a turn the
        client committed or cleared while it was looked at is not looked at further, and
        a stop's split of the audio and its commit happen with no await between them, so
        that no frame lands in a turn already ended."""
        while (turn := self.turn).detector is not None:
            changes = await turn.detector.update(turn.session.audio)
            if turn is not self.turn:
                continue  # committed or cleared meanwhile: look at the turn after it
            events = []
            for change in changes:
                if isinstance(change, SpeechStarted):
                    events.append(
                        event(
                            "input_audio_buffer.speech_started",
                            audio_start_ms=turn.ms(change.at),
                            item_id=turn.item_id,
                        )
                    )
                    continue
                events.append(
                    event(
                        "input_audio_buffer.speech_stopped",
                        audio_end_ms=turn.ms(change.at),
                        item_id=turn.item_id,
                    )
                )
                rest = turn.session.audio.split_off(change.at)
                events.append(self._end_turn())
                self.turn.session.append(rest)
                self.turn.watch = turn.watch.split_off(change.at)  # when `rest` came
                break  # look at the next turn, with the rest
            if events:
                await self.send(*events)
            if self.turn is turn:
                return

    def _hear(self, samples: np.ndarray) -> None:
        """New audio of the session: the current turn's, and the speakers' record of it."""
        self.turn.session.append(samples)
        if self.speakers is not None:
            self.speakers.append(samples)

    def _take_resampler_tail(self) -> None:
        """The client ends the turn here: the samples the resampler still holds are its
        last (a fresh resampler starts the next turn)."""
        self._hear(self.decoder.flush())
        self.decoder = FrameDecoder(self.config.stream_config())

    async def _commit_by_client(self) -> None:
        self._take_resampler_tail()
        if self.turn.seconds < MIN_COMMIT_SECONDS:
            raise RealtimeEventError(
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_SECONDS * 1000:.0f}ms of audio, but buffer only has "
                f"{self.turn.seconds * 1000:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        await self._commit()

    async def _commit(self) -> None:
        await self.send(self._end_turn())

    def _end_turn(self) -> dict[str, Any]:
        """End the current turn: its item is committed and will be completed; a new turn
        begins where it ends. The `committed` event to send."""
        turn = self.turn
        committed = event(
            "input_audio_buffer.committed",
            item_id=turn.item_id,
            previous_item_id=self.previous_item_id,
        )
        self.previous_item_id = turn.item_id
        self.committed.append(turn)
        self.turn = self._new_turn(turn.base_s + turn.seconds)
        self.wake.set()
        return committed

    async def _clear(self) -> None:
        """Drop the audio not yet committed. Words of it already sent as deltas were final:
        their item is committed and completed with them, and nothing more is read."""
        turn = self.turn
        self.decoder = FrameDecoder(self.config.stream_config())  # what it held goes too
        if turn.transcript:
            turn.cleared = True
            await self._commit()
        else:
            self.turn = self._new_turn(turn.base_s + turn.seconds)
        await self.send(event("input_audio_buffer.cleared"))

    # -- the session's steps --------------------------------------------------------------

    @property
    def buffered_seconds(self) -> float:
        """Audio held that the model has not read: the current turn's, and that of the
        committed turns waiting to be completed (a client committing faster than they are
        read would otherwise queue audio, and work, without bound)."""
        waiting = sum(turn.session.buffered_seconds for turn in self.committed)
        return self.turn.session.buffered_seconds + waiting

    @property
    def busy(self) -> bool:
        """Committed turns not yet completed: the client waits for their transcripts."""
        return bool(self.committed) or self.completing

    async def drop_backlog(self) -> None:
        """Over the bound: oldest first, the committed turns still waiting lose their audio
        (each stretch said at once; the item completes with the words heard before) until
        what is held fits; then the current turn keeps only its newest window."""
        for turn in self.committed:
            if self.buffered_seconds <= self.max_buffer_s:
                return
            await self._deliver(turn, turn.session.drop_backlog("overload", keep_s=0.0))
        if self.buffered_seconds > self.max_buffer_s:
            await self._deliver(self.turn, self.turn.session.drop_backlog("overload"))

    async def _run(self) -> None:
        """Complete committed turns in order; on every beat, step the current turn."""
        while not self.stopping.is_set():
            await first_of(self.beats.wait(), self.wake.wait(), self.stopping.wait())
            self.wake.clear()
            while self.committed:
                self.completing = True
                try:
                    await self._complete(self.committed.popleft())
                finally:
                    self.completing = False
            turn = self.turn
            if self.stopping.is_set() or not turn.session.step_due:
                continue
            await self._deliver(turn, turn.session.drop_backlog(self.calls.skip_reason))
            await self._deliver(turn, await self.calls.guarded(turn.session.step()))

    async def _deliver(self, turn: _Turn, messages: list[dict[str, Any]]) -> None:
        """A stream's messages as Realtime events: finals become deltas of the turn's item;
        audio never heard is said at once (an `error` naming the stretch) and again when the
        item completes or fails."""
        for message in messages:
            turn.watch.sent(message)
            if message["type"] == "final":
                delta = message["text"] if turn.transcript else message["text"].lstrip()
                if not delta:
                    continue
                turn.transcript += delta
                extra = {}
                if "logprobs" in message:  # as the delta's text: the item's first word unspaced
                    extra["logprobs"] = _starting_at(message["logprobs"], message["text"], delta)
                await self.send(
                    event(
                        "conversation.item.input_audio_transcription.delta",
                        item_id=turn.item_id,
                        content_index=0,
                        delta=delta,
                        **extra,
                    )
                )
            elif message["type"] == "skipped":
                turn.skipped.append(message)
                await self.error(
                    f"audio from {turn.ms(message['start'])} ms to {turn.ms(message['end'])} ms "
                    f"was not transcribed ({message['reason']})",
                    "audio_skipped",
                )

    async def _complete(self, turn: _Turn) -> None:
        """Read the rest of a committed turn; `completed` with its transcript, or `failed`
        when the model heard none of it."""
        if not turn.cleared:
            rest = turn.session.finish(np.zeros(0, np.float32))
            await self._deliver(turn, await self.calls.guarded(rest))
        failures = [s for s in turn.skipped if s["reason"] != "overload"]
        if failures and not turn.transcript:
            await self.send(
                event(
                    "conversation.item.input_audio_transcription.failed",
                    item_id=turn.item_id,
                    content_index=0,
                    error={
                        "type": "server_error",
                        "code": failures[-1]["reason"],
                        "message": "the speech model could not transcribe this audio",
                        "param": None,
                    },
                )
            )
            return
        speaker = {}
        if self.speakers is not None and turn.transcript:
            who = await self.speakers.speaker_between(turn.base_s, turn.base_s + turn.seconds)
            speaker = {} if who is None else {"speaker": who}
        await self.send(
            event(
                "conversation.item.input_audio_transcription.completed",
                item_id=turn.item_id,
                content_index=0,
                transcript=turn.transcript,
                usage={"type": "duration", "seconds": round(turn.seconds, 3)},
                **speaker,
            )
        )

    async def finish(self) -> None:
        """The server drains: the current turn is committed if it holds anything, and every
        committed turn completed."""
        await self.looks.close()  # the turns that ended in what was heard, committed there
        self._take_resampler_tail()
        if self.turn.seconds >= MIN_COMMIT_SECONDS and self.turn.session.audio.speech_regions():
            await self._commit()
        self.stopping.set()
        await self.worker
        while self.committed:
            await self._complete(self.committed.popleft())

    async def cancel(self) -> None:
        await self.looks.cancel()
        self.worker.cancel()
        await asyncio.gather(self.worker, return_exceptions=True)


def _starting_at(logprobs: list[dict[str, Any]], text: str, delta: str) -> list[dict[str, Any]]:
    """The words' logprobs of a final's `text` for the `delta` sent for it (the same text,
    or with its leading whitespace removed): the first token loses that whitespace too."""
    cut = len(text) - len(delta)
    if not cut or not logprobs:
        return logprobs
    first = logprobs[0]["token"][cut:]
    return [{**logprobs[0], "token": first, "bytes": list(first.encode())}, *logprobs[1:]]


async def realtime(request: web.Request) -> web.WebSocketResponse:
    """Only transcription sessions: a conversation (a voice agent) needs a language model."""
    if request.query.get("intent") != "transcription":
        raise ApiError(
            400,
            "hermes serves Realtime transcription sessions: connect with ?intent=transcription",
            "invalid_intent",
            param="intent",
        )
    if (name := request.query.get("model")) is not None:  # the SDK always names one
        await check_model(request, name, "transcribe")
    diarize = flag(request.query, "diarize")
    return await serve_live(request, lambda ws: _RealtimeConnection(request, ws, diarize))
