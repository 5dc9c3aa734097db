"""Clients of the running service: file uploads, paced WebSocket streams, concurrent uploads;
and the streaming latency analysis."""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import soxr

from benchmarks.audio import Item, pcm16
from benchmarks.stack import Stack
from gateway.modes.audio import SAMPLE_RATE

FRAME_SECONDS = 0.1
KEPT_UP_TAIL_S = 5.0  # a stream kept up when `done` came within this long after `stop`


# ---- file mode ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadReply:
    status: int
    body: dict  # the JSON reply; a reply that is not JSON as {"raw": its first 500 characters}
    retry_after: str | None  # the Retry-After header
    wall_s: float


async def post_upload(stack: Stack, item: Item, response_format: str = "json") -> UploadReply:
    """POST the file to the OpenAI route (multipart; `json`, or another JSON format such as
    `diarized_json`), timed from the request to the parsed reply, whatever the status."""
    data = item.path.read_bytes()
    form = aiohttp.FormData()
    form.add_field("file", data, filename=item.path.name)
    form.add_field("response_format", response_format)
    started = time.perf_counter()
    async with stack.session.post(
        f"{stack.gateway_url}/v1/audio/transcriptions", data=form
    ) as reply:
        raw = await reply.text()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"raw": raw[:500]}
        return UploadReply(
            reply.status, body, reply.headers.get("Retry-After"), time.perf_counter() - started
        )


async def upload(stack: Stack, item: Item) -> tuple[str, float]:
    """The upload's (text, wall s); an error when it did not succeed."""
    reply = await post_upload(stack, item)
    if reply.status != 200:
        raise RuntimeError(f"upload of {item.name} failed: {reply.status} {reply.body}")
    return reply.body["text"], reply.wall_s


@dataclass(frozen=True)
class FileReference:
    """The service's file-mode transcript of a clip: what live streams of it are measured
    against (their words' latencies, their text)."""

    words: list[tuple[str, float]]  # (normalized word, its end time in the audio)
    text: str

    @classmethod
    def of(cls, segments: list[dict]) -> FileReference:
        """From segments with words, as `/transcribe?word_timestamps=true` returns them."""
        return cls(
            words=[
                (w, word["end"])
                for segment in segments
                for word in segment["words"]
                for w in words_of(word["word"])
            ],
            text="".join(segment["text"] for segment in segments).strip(),
        )


async def file_reference(stack: Stack, item: Item) -> FileReference:
    """One upload of the clip to `/transcribe` with word timestamps."""
    form = aiohttp.FormData()
    form.add_field("file", item.path.read_bytes(), filename=item.path.name)
    form.add_field("word_timestamps", "true")
    async with stack.session.post(f"{stack.gateway_url}/transcribe", data=form) as reply:
        body = await reply.json()
    return FileReference.of(body["segments"])


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


# ---- throughput ----------------------------------------------------------------------------


@dataclass
class ThroughputRun:
    uploads: int
    wall_s: float
    audio_s: float
    inferences: int
    executions: int
    texts: list[str]


async def concurrent_uploads(stack: Stack, item: Item, count: int) -> ThroughputRun:
    inferences, executions = await stack.batch_counts()
    started = time.perf_counter()
    results = await asyncio.gather(*(upload(stack, item) for _ in range(count)))
    wall = time.perf_counter() - started
    after_inferences, after_executions = await stack.batch_counts()
    return ThroughputRun(
        count,
        wall,
        count * item.duration,
        after_inferences - inferences,
        after_executions - executions,
        [text for text, _ in results],
    )


# ---- streaming -----------------------------------------------------------------------------


@dataclass
class PacedRun:
    """Audio sent in frames of FRAME_SECONDS, paced in real time."""

    frame_sent: list[float] = field(default_factory=list)  # monotonic time frame i was sent

    def sent_at(self, stream_time: float) -> float:
        """When the audio at `stream_time` (seconds from the stream's start) had been sent."""
        index = max(0, math.ceil(round(stream_time / FRAME_SECONDS, 6)) - 1)
        return self.frame_sent[min(index, len(self.frame_sent) - 1)]

    async def send_paced(
        self, frames: list[bytes], send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """Each frame through `send`, one every FRAME_SECONDS, noting when it went."""
        started = time.monotonic()
        for index, frame in enumerate(frames):
            await send(frame)
            self.frame_sent.append(time.monotonic())
            await asyncio.sleep(max(0.0, started + (index + 1) * FRAME_SECONDS - time.monotonic()))


def frames_of(payload: bytes, sample_rate: int = SAMPLE_RATE) -> list[bytes]:
    """PCM16 bytes cut into frames of FRAME_SECONDS."""
    size = int(sample_rate * FRAME_SECONDS) * 2
    return [payload[offset : offset + size] for offset in range(0, len(payload), size)]


@dataclass
class StreamRun(PacedRun):
    messages: list[tuple[float, dict]] = field(default_factory=list)  # (arrival, message)
    stop_sent: float = 0.0
    done_at: float | None = None
    close_code: int | None = None  # the WebSocket's close code once closed

    @property
    def finals(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.messages if m["type"] == "final"]

    @property
    def text(self) -> str:
        return "".join(m["text"] for _, m in self.finals)

    def timed_finals(self) -> list[tuple[float, dict]]:
        """Per final message, (its latency, the message): its arrival − when the audio at its
        `end` was sent."""
        return [(t - self.sent_at(m["end"]), m) for t, m in self.finals]

    def final_latencies(self) -> list[float]:
        return [latency for latency, _ in self.timed_finals()]

    def arrived_final_latencies(self) -> list[tuple[float, float]]:
        """Per final message, (its arrival, its latency): to see latency move over a run."""
        timed = zip(self.finals, self.timed_finals(), strict=True)
        return [(t, latency) for (t, _), (latency, _) in timed]

    def word_latencies(self, reference: list[tuple[str, float]]) -> tuple[list[float], list[float]]:
        """Per word of `reference` (word, end time in the audio) that the stream wrote: the
        time from its audio being sent to it first being shown (final text + partial), and to
        it being final. Words are matched to the reference by alignment of the word lists."""
        ref_words = [w for w, _ in reference]
        shown_at: dict[int, float] = {}
        final_at: dict[int, float] = {}
        finals, partial = "", ""
        for arrival, message in self.messages:
            if message["type"] == "final":
                finals += message["text"]
                _mark(ref_words, words_of(finals), arrival, final_at)
            elif message["type"] == "partial":
                partial = message["text"]
            else:
                continue
            _mark(ref_words, words_of(finals + partial), arrival, shown_at)

        def latencies(seen: dict[int, float]) -> list[float]:
            return [t - self.sent_at(reference[i][1]) for i, t in sorted(seen.items())]

        return latencies(shown_at), latencies(final_at)

    @property
    def tail_s(self) -> float:
        """From `stop` to `done`: the backlog left when the audio ended."""
        return (self.done_at if self.done_at is not None else math.inf) - self.stop_sent


def _mark(
    reference: list[str], hypothesis: list[str], arrival: float, seen: dict[int, float]
) -> None:
    matcher = difflib.SequenceMatcher(None, reference, hypothesis, autojunk=False)
    for block in matcher.get_matching_blocks():
        for i in range(block.a, block.a + block.size):
            seen.setdefault(i, arrival)


async def stream(stack: Stack, item: Item, *, delay: float = 0.0) -> StreamRun:
    """Send the clip as PCM16 in 100 ms frames paced in real time, reading replies meanwhile."""
    await asyncio.sleep(delay)
    run = StreamRun()
    url = f"{stack.gateway_url}/stream-audio"
    async with stack.session.ws_connect(url, max_msg_size=0) as ws:
        reader = asyncio.create_task(read_events(ws, run.messages, last="done"))
        await run.send_paced(frames_of(pcm16(item.audio)), ws.send_bytes)
        await ws.send_json({"type": "stop"})
        run.stop_sent = time.monotonic()
        await asyncio.wait_for(reader, timeout=600)
    if run.messages and run.messages[-1][1]["type"] == "done":
        run.done_at = run.messages[-1][0]
    run.close_code = ws.close_code
    return run


async def read_events(
    ws: aiohttp.ClientWebSocketResponse,
    events: list[tuple[float, dict]],
    last: str | None = None,
) -> None:
    """Every JSON message with its arrival time, until the socket closes or one of type
    `last` has come."""
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            return
        events.append((time.monotonic(), json.loads(message.data)))
        if events[-1][1]["type"] == last:
            return


def slowest_finals(runs: list[StreamRun], share: float = 0.05) -> list[dict[str, Any]]:
    """The slowest `share` of the runs' final messages (at least one), slowest first: which
    stream, where its text ends in the audio, its latency (`StreamRun.timed_finals`) and
    its text. What makes a level's p95: a word committed late, or a slow step."""
    finals = [
        (latency, index, message)
        for index, run in enumerate(runs)
        for latency, message in run.timed_finals()
    ]
    finals.sort(key=lambda final: final[0], reverse=True)
    return [
        {"stream": index, "end_s": message["end"], "latency_s": latency, "text": message["text"]}
        for latency, index, message in finals[: max(1, math.ceil(share * len(finals)))]
    ]


def start_delays(stack: Stack, count: int) -> list[float]:
    """Delays that spread `count` streams' starts evenly over one step (the realistic case:
    steps of independent users do not line up)."""
    spread = stack.settings.stream_step_seconds / count
    return [i * spread for i in range(count)]


async def concurrent_streams(stack: Stack, item: Item, count: int) -> list[StreamRun]:
    """`count` streams of the clip, their starts spread over one step (`start_delays`)."""
    delays = start_delays(stack, count)
    return list(await asyncio.gather(*(stream(stack, item, delay=delay) for delay in delays)))


# ---- OpenAI Realtime transcription -------------------------------------------------------

REALTIME_RATE = 24_000  # the Realtime API's default PCM rate
REALTIME_QUIET_S = 1.0  # silence after the clip, so that server VAD ends its last turn
SETTLED_S = 1.0  # no event for this long, every turn ended: the session's work is done
UPDATED = "session.updated"
STARTED = "input_audio_buffer.speech_started"
STOPPED = "input_audio_buffer.speech_stopped"
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"
ENDED = (COMPLETED, FAILED)


@dataclass
class RealtimeRun(PacedRun):
    """One Realtime transcription session: the server's events with their arrival times."""

    events: list[tuple[float, dict]] = field(default_factory=list)  # (arrival, event)
    clip_s: float = 0.0  # the clip's length, before the silence sent after it

    def _stops(self) -> dict[str, tuple[float, float]]:
        """Per item that server VAD ended: (the stop event's arrival, when the audio up to
        the stop had been sent)."""
        return {
            e["item_id"]: (t, self.sent_at(e["audio_end_ms"] / 1000))
            for t, e in self.events
            if e["type"] == STOPPED
        }

    def settled(self) -> bool:
        """The server has answered the update sent after the audio, every turn that started
        has ended, and nothing has come for SETTLED_S."""
        return (
            any(e["type"] == UPDATED for _, e in self.events)
            and not self.unfinished
            and time.monotonic() - self.events[-1][0] >= SETTLED_S
        )

    @property
    def unfinished(self) -> int:
        """Items whose speech started and that are not yet completed (or failed)."""
        started = {e["item_id"] for _, e in self.events if e["type"] == STARTED}
        return len(started - {e["item_id"] for _, e in self.events if e["type"] in ENDED})

    def stop_latencies(self) -> list[float]:
        """Per turn, from the audio up to its stop (the speech's end and the silence that
        ended it) being sent to `speech_stopped`: the detector's part."""
        return [arrival - sent for arrival, sent in self._stops().values()]

    def completion_latencies(self) -> list[float]:
        """Per turn, from the audio up to its stop being sent to its transcript's
        `completed` (or `failed`): what a client of server VAD waits for."""
        return [latency for _, latency in self.arrived_completion_latencies()]

    def arrived_completion_latencies(self) -> list[tuple[float, float]]:
        """`completion_latencies`, each with its event's arrival."""
        stops = self._stops()
        return [
            (t, t - stops[e["item_id"]][1])
            for t, e in self.events
            if e["type"] in ENDED and e["item_id"] in stops
        ]

    @property
    def turns(self) -> int:
        """Items completed or failed."""
        return sum(e["type"] in ENDED for _, e in self.events)

    @property
    def text(self) -> str:
        """The completed turns' transcripts, in the order they came."""
        completed = (e for _, e in self.events if e["type"] == COMPLETED)
        return " ".join(e["transcript"].strip() for e in completed).strip()

    @property
    def tail_s(self) -> float:
        """From the clip's end being sent to its last item ended (server VAD's silence
        included)."""
        ended = [t for t, e in self.events if e["type"] in ENDED]
        return (max(ended) if ended else math.inf) - self.sent_at(self.clip_s)


async def realtime_session(
    stack: Stack, item: Item, *, delay: float = 0.0, timeout_s: float = 600.0
) -> RealtimeRun:
    """The clip, then REALTIME_QUIET_S of silence, as `input_audio_buffer.append` events of
    PCM16 at 24 kHz paced in real time, to `/v1/realtime?intent=transcription` with server
    VAD (its default settings); done once the server has read all of it (it answers a
    `session.update` sent after the audio), every turn whose speech started has ended, and no
    event has come for SETTLED_S."""
    await asyncio.sleep(delay)
    audio = np.concatenate([item.audio, np.zeros(int(REALTIME_QUIET_S * SAMPLE_RATE), "f4")])
    frames = frames_of(pcm16(soxr.resample(audio, SAMPLE_RATE, REALTIME_RATE)), REALTIME_RATE)
    run = RealtimeRun(clip_s=item.duration)
    url = f"{stack.gateway_url}/v1/realtime?intent=transcription"
    async with stack.session.ws_connect(url, max_msg_size=0) as ws:

        async def append(frame: bytes) -> None:
            audio = base64.b64encode(frame).decode()
            await ws.send_json({"type": "input_audio_buffer.append", "audio": audio})

        reader = asyncio.create_task(read_events(ws, run.events))
        await run.send_paced(frames, append)
        await ws.send_json({"type": "session.update", "session": {"type": "transcription"}})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not reader.done() and not run.settled():
            await asyncio.sleep(0.05)
        reader.cancel()
    return run


async def concurrent_realtime(stack: Stack, item: Item, count: int) -> list[RealtimeRun]:
    """`count` Realtime sessions of the clip, their starts spread over one step."""
    delays = start_delays(stack, count)
    return list(
        await asyncio.gather(*(realtime_session(stack, item, delay=delay) for delay in delays))
    )


def quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values, default=math.nan),
        "count": len(values),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
