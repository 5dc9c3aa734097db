"""Real-time mode: one `StreamSession` per WebSocket, owning all of that stream's state.

Audio frames come in at the client's rate and encoding and are converted to 16 kHz mono
float32 (`FrameDecoder`). On every beat of the shared `StepClock` with new audio, the session
transcribes its uncommitted buffer (at most 30 s) at the stream priority with the model's
low-latency context, and LocalAgreement-2 decides what is final, except that words followed
by a pause are final at once (when the hypothesis passed Whisper's checks: a step's decode is
not retried at a higher temperature). The buffer is trimmed at the end of committed segments,
keeping a second of lead-in. Silence, and speech already committed, are never sent to the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import soxr

from gateway.modes.agreement import LocalAgreement
from gateway.modes.audio import SAMPLE_RATE, WINDOW_SECONDS
from gateway.modes.files import collect, transcribe_audio
from gateway.core.transcript import Segment, Word
from gateway.core.contract import AsrBackend, Priority, TranscribeOptions
from gateway.modes.vad import StreamingVad

ENCODINGS = {"pcm_s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MAX_CHANNELS = 8
LEAD_SECONDS = 1.0  # audio kept before a trim point: Whisper needs a moment of lead-in
TRIM_AFTER_SECONDS = 8.0  # trim once the buffer is longer than this
# Speech regions are padded (VadConfig.pad_seconds) and word end times drift by a few hundred
# ms: speech must reach this far past the last committed word to count as new.
NEW_SPEECH_MARGIN_SECONDS = 0.5
# Non-speech after the last speech region (itself padded by 0.3 s) that ends an utterance: the
# words before it are final at once, not a beat later when a second hypothesis agrees.
PAUSE_SECONDS = 0.5
# ... once the buffer is this long: on a few seconds of audio Whisper guesses (tiny.en on
# JFK's first 3 s: "And so am I fellow Americans"; on 4-5.5 s: "asked not"), and a second
# hypothesis is worth the wait. (On the composites, 8 s kept all of the latency gained at 5 s.)
PAUSE_COMMIT_MIN_BUFFER_SECONDS = 8.0
# Non-speech this long between two utterances ends a step's window: Whisper on "speech, long
# silence, speech" in one window leaves out or misplaces whole phrases on either side (tiny.en
# on the end of JFK, 12-27 s of silence, then JFK again: "can do for your country" or "And so
# my fellow Americans" lost). A buffer holds such a pause only after an outage or a backlog.
LONG_PAUSE_SECONDS = 3.0
PAUSE_HEARD_SECONDS = 1.0  # how much of that pause the window keeps after the speech
# Speech the model heard less than this of, up to the end of what it heard, and gave no words
# for, is kept for the next step: Whisper leaves out a word cut off at a window's end. Heard
# longer without words, it is a hum the detector took for speech, and goes.
CUT_OFF_SPEECH_SECONDS = 2.0


class StreamProtocolError(ValueError):
    """A message or frame the session cannot use; reported, and the session goes on."""


@dataclass(frozen=True)
class StreamConfig:
    language: str | None = None
    prompt: str | None = None
    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm_s16le"
    channels: int = 1

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> StreamConfig:
        unknown = set(message) - {"type", "language", "prompt", "sample_rate", "encoding", "channels"}
        if unknown:
            raise StreamProtocolError(f"unknown config fields: {', '.join(sorted(unknown))}")
        config = cls(
            language=message.get("language") or None,
            prompt=message.get("prompt") or None,
            sample_rate=message.get("sample_rate", SAMPLE_RATE),
            encoding=message.get("encoding", "pcm_s16le"),
            channels=message.get("channels", 1),
        )
        for name in ("language", "prompt"):
            if getattr(config, name) is not None and not isinstance(getattr(config, name), str):
                raise StreamProtocolError(f"config {name} must be a string")
        if not isinstance(config.sample_rate, int) or not MIN_SAMPLE_RATE <= config.sample_rate <= MAX_SAMPLE_RATE:
            raise StreamProtocolError(
                f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}"
            )
        if not isinstance(config.encoding, str) or config.encoding not in ENCODINGS:
            raise StreamProtocolError(f"encoding must be one of {', '.join(ENCODINGS)}")
        if not isinstance(config.channels, int) or not 1 <= config.channels <= MAX_CHANNELS:
            raise StreamProtocolError(f"channels must be an integer from 1 to {MAX_CHANNELS}")
        return config


class FrameDecoder:
    """Raw frames in the configured format → 16 kHz mono float32 (channels averaged)."""

    def __init__(self, config: StreamConfig) -> None:
        self.dtype = ENCODINGS[config.encoding]
        self.channels = config.channels
        self.frame_bytes = self.dtype.itemsize * config.channels
        self.resampler = (
            soxr.ResampleStream(config.sample_rate, SAMPLE_RATE, 1, dtype="float32")
            if config.sample_rate != SAMPLE_RATE
            else None
        )

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) % self.frame_bytes:
            raise StreamProtocolError(
                f"a binary frame of {len(data)} bytes is not a whole number of "
                f"{self.frame_bytes}-byte samples; frame dropped"
            )
        samples = np.frombuffer(data, self.dtype).astype(np.float32)
        if self.dtype.kind == "i":
            samples /= 32768.0
        elif not np.all(np.isfinite(samples)):
            raise StreamProtocolError("a frame contains NaN or infinite samples; frame dropped")
        mono = samples.reshape(-1, self.channels).mean(axis=1) if self.channels > 1 else samples
        mono = np.clip(mono, -1.0, 1.0)
        return self.resampler.resample_chunk(mono) if self.resampler else mono

    def flush(self) -> np.ndarray:
        if self.resampler is None:
            return np.zeros(0, np.float32)
        return self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def final_message(words: list[Word], not_before: float) -> dict[str, Any]:
    """Committed words as one message; times never go back (word timestamps drift by a
    few hundred ms between hypotheses)."""
    start = max(words[0].start, not_before)
    return {
        "type": "final",
        "text": "".join(word.word for word in words),
        "start": round(start, 3),
        "end": round(max(words[-1].end, start), 3),
    }


class StreamSession:
    """The state of one live stream; the WebSocket handler feeds it and sends what it says."""

    def __init__(
        self,
        backend: AsrBackend,
        config: StreamConfig,
        *,
        min_new_audio_s: float,
        vad: StreamingVad | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.min_new_audio_s = min_new_audio_s  # a step with less new audio waits a beat
        self.agreement = LocalAgreement()
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0.0  # stream time of buffer[0], seconds
        self.received = 0.0  # seconds of audio received
        self.stepped_at = 0.0  # `received` at the last step
        self.segments: list[Segment] = []  # the last hypothesis, in stream time
        self.partial = ""
        self.final_end = 0.0  # end time of the last final message sent
        self.heard_until = 0.0  # end of the audio the model has transcribed so far
        self.model_seconds: float | None = None  # the last step's time at the model, if any
        self.speech_end = 0.0  # stream time where the buffer's last speech region ends
        self.vad = vad or StreamingVad()  # scores each frame once, as it arrives

    def append(self, samples: np.ndarray) -> None:
        # Joined when the buffer is next read: one copy per step, not one per frame (a client
        # sending one-sample frames would otherwise cost a copy of the whole buffer each)
        self._pending.append(samples)
        self.received += samples.size / SAMPLE_RATE
        self.vad.accept(samples)

    @property
    def buffer(self) -> np.ndarray:
        if self._pending:
            self._buffer = np.concatenate([self._buffer, *self._pending])
            self._pending = []
        return self._buffer

    @buffer.setter
    def buffer(self, samples: np.ndarray) -> None:
        self._buffer, self._pending = samples, []

    @property
    def step_due(self) -> bool:
        return self.received - self.stepped_at >= self.min_new_audio_s

    def _options(self) -> TranscribeOptions:
        # Only the client's prompt: conditioned on its own committed text, Whisper "continues"
        # it and skips words still in the buffer (measured on jfk.flac: "can do for your"
        # lost after a trim), which LocalAgreement then cannot recover.
        return TranscribeOptions(
            language=self.config.language,
            prompt=self.config.prompt,
            word_timestamps=True,
            low_latency=True,
        )

    def _speech_regions(self, buffer: np.ndarray) -> list[tuple[float, float]]:
        """The detector's speech regions in the buffer, in stream time."""
        first = self._stream_sample(self.buffer_start)
        return [
            (self.buffer_start + a / SAMPLE_RATE, self.buffer_start + b / SAMPLE_RATE)
            for a, b in self.vad.regions(first, first + buffer.size)
        ]

    def _window_end(self, buffer: np.ndarray) -> float | None:
        """Where this step's window ends (stream time), and notes where its last speech ends;
        None when the buffer holds no speech after the committed words. The buffer keeps
        committed audio as lead-in; without new speech a step would only transcribe that
        again, and the pause after it would grow unchecked. The window stops in the first
        long pause after the new speech: what follows it is the next step's."""
        regions = self._speech_regions(buffer)
        new = [r for r in regions if r[1] > self.agreement.committed_end + NEW_SPEECH_MARGIN_SECONDS]
        if not new:
            return None
        last = new[0]
        for region in new[1:]:
            if region[0] - last[1] >= LONG_PAUSE_SECONDS:
                self.speech_end = last[1]
                return last[1] + PAUSE_HEARD_SECONDS
            last = region
        self.speech_end = last[1]
        return self.buffer_start + buffer.size / SAMPLE_RATE

    @property
    def _utterance_ended(self) -> bool:
        """Whether the audio the last step heard ends in a pause (not the buffer, which has
        grown while the model worked) and its hypothesis can be trusted without a second."""
        return (
            not any(segment.failed_checks for segment in self.segments)
            and self.heard_until - self.buffer_start >= PAUSE_COMMIT_MIN_BUFFER_SECONDS
            and self.heard_until - self.speech_end >= PAUSE_SECONDS
        )

    async def _hypothesis(self) -> list[Word] | None:
        """Transcribe the buffer; None when it holds no new speech (nothing sent to the model)."""
        buffer = self.buffer  # as it is now: frames keep arriving while the model works
        window_end = self._window_end(buffer)
        if window_end is None:
            return None
        end = self._stream_sample(window_end - self.buffer_start)
        start = max(end - int(WINDOW_SECONDS * SAMPLE_RATE), 0)
        window = buffer[start:end]
        offset = self.buffer_start + start / SAMPLE_RATE
        started = time.monotonic()
        result = await self.backend.transcribe(window, self._options(), priority=Priority.STREAM)
        self.model_seconds = time.monotonic() - started
        self.heard_until = offset + window.size / SAMPLE_RATE
        self.segments = [segment.shifted(offset) for segment in result.segments]
        return [word for segment in self.segments for word in segment.words]

    async def step(self) -> list[dict[str, Any]]:
        """Transcribe what is uncommitted; the messages to send (final, then partial)."""
        self.stepped_at = self.received
        self.model_seconds = None
        hypothesis = await self._hypothesis()
        if hypothesis is None:
            self._drop_silence(until=self.buffer_start + self.buffer.size / SAMPLE_RATE)
            return self._partial([])
        committed = self.agreement.insert(hypothesis)
        if self._utterance_ended:
            # the utterance has ended: its words will not change with more audio
            committed += self.agreement.commit_through(self.speech_end)
        messages = self._finals(committed)
        if self.agreement.tail:
            self._trim()
        else:
            # the model heard no words past the committed ones: what follows them is a pause
            self._drop_silence(until=self._wordless_until())
        return messages + self._partial(self.agreement.tail)

    def drop_backlog(self, reason: str) -> list[dict[str, Any]]:
        """Keep at most one window of audio before a step. A stream whose steps fall behind
        (overload) or fail (model unavailable) would otherwise buffer without bound: the
        oldest audio goes, words already heard in it are committed as they are, and the
        stretch the model never heard is reported as `skipped`."""
        end = self.buffer_start + self.buffer.size / SAMPLE_RATE
        keep_from = end - WINDOW_SECONDS
        if keep_from <= self.buffer_start:
            return []
        messages = self._finals(self.agreement.commit_through(keep_from))
        unheard_from = max(self.heard_until, self.final_end, self.buffer_start)
        self._cut(keep_from)
        if keep_from - unheard_from >= 0.01:
            messages.append({
                "type": "skipped",
                "start": round(unheard_from, 3),
                "end": round(keep_from, 3),
                "reason": reason,
            })
            self.final_end = max(self.final_end, round(keep_from, 3))
        return messages

    async def finish(self, decoder: FrameDecoder) -> list[dict[str, Any]]:
        """End of stream: read the rest of the buffer to its end, as file mode reads a chunk
        (a single pass may stop short of the end), and make it all final."""
        self.append(decoder.flush())
        # even with no audio since the last step: that step's single pass may have stopped
        # short of the buffer's end
        hypothesis = await self._read_to_end()
        return self._finals(self.agreement.flush(hypothesis)) + self._partial([])

    async def _read_to_end(self) -> list[Word] | None:
        """The buffer read as file mode reads a file, without the low-latency shortcuts
        (its last words decoded once, with a short context: "She called" for "She called his
        name many times.")."""
        buffer = self.buffer
        progress = transcribe_audio(
            self.backend,
            buffer,
            replace(self._options(), low_latency=False),
            window_seconds=WINDOW_SECONDS,
            in_flight=2,
            priority=Priority.STREAM,
        )
        transcript = await collect(progress, buffer.size / SAMPLE_RATE)
        if not transcript.segments:
            return None
        return [word.shifted(self.buffer_start) for word in transcript.words]

    def _finals(self, words: list[Word]) -> list[dict[str, Any]]:
        if not words:
            return []
        message = final_message(words, self.final_end)
        self.final_end = message["end"]
        return [message]

    def _partial(self, words: list[Word]) -> list[dict[str, Any]]:
        text = "".join(word.word for word in words)
        if text == self.partial:
            return []
        self.partial = text
        return [{"type": "partial", "text": text}]

    def _cut(self, at: float) -> None:
        """Drop buffered audio before stream time `at`."""
        samples = max(0, min(int(round((at - self.buffer_start) * SAMPLE_RATE)), self.buffer.size))
        self.buffer = self.buffer[samples:]
        self.buffer_start += samples / SAMPLE_RATE
        self.vad.forget_before(self._stream_sample(self.buffer_start))

    @staticmethod
    def _stream_sample(seconds: float) -> int:
        return round(seconds * SAMPLE_RATE)

    def _trim(self) -> None:
        """Cut the buffer at the end of the last segment that is wholly committed (once it
        is long enough for that to matter); `drop_backlog` bounds it when that is not enough."""
        if self.buffer.size / SAMPLE_RATE <= TRIM_AFTER_SECONDS:
            return
        done = [s.end for s in self.segments if s.end <= self.agreement.committed_end + 0.01]
        if done:
            self._cut(max(done) - LEAD_SECONDS)

    def _wordless_until(self) -> float:
        """After a step that heard no new words: how far the buffer is a pause. Up to where
        the model listened (frames that came in meanwhile are unheard), except speech it
        heard only the start of; and on to the next speech when only silence lies between."""
        regions = self._speech_regions(self.buffer)
        running = [r for r in regions if r[0] < self.heard_until <= r[1] + PAUSE_SECONDS]
        if running:
            unheard_from = max(running[-1][0], self.agreement.committed_end)
            if self.heard_until - unheard_from < CUT_OFF_SPEECH_SECONDS:
                return unheard_from
            return self.heard_until
        later = [start for start, _ in regions if start >= self.heard_until]
        return later[0] if later else self.heard_until

    def _drop_silence(self, until: float) -> None:
        """Audio without words up to stream time `until`: keep only the lead-in before it
        for what comes next."""
        self._cut(max(until - LEAD_SECONDS, self.agreement.committed_end))
