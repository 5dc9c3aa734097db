"""Real-time mode: one `StreamSession` per live stream decides when to ask the model and what
becomes final. Its audio is a `StreamBuffer`, its words go out as `StreamMessages`.

Audio frames come in at the client's rate and encoding and are converted to 16 kHz mono
float32 (`gateway.modes.stream_input`). On every beat of the shared `StepClock` with new
audio, the session transcribes its uncommitted buffer (at most 30 s) at the stream priority
(the file priority for audio sent far faster than real time) with the model's low-latency
context, and LocalAgreement-2 decides what is final, except that
words followed by a pause are final at once (when the hypothesis passed Whisper's checks: a
step's decode is not retried at a higher temperature). The buffer is trimmed where committed
words end (a segment, or a word before a gap), keeping a second of lead-in. Silence, and
speech already committed, are never sent to the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from gateway.core.contract import (
    AsrBusy,
    AsrError,
    AsrFailed,
    AsrRejected,
    Priority,
    TranscribeOptions,
    WindowReader,
)
from gateway.core.transcript import Segment, Word
from gateway.modes.agreement import LocalAgreement, before_decoding_loop
from gateway.modes.audio import SAMPLE_RATE, WINDOW_SECONDS
from gateway.modes.files import FileProgress, assemble, transcribe_audio
from gateway.modes.stream_buffer import StreamBuffer, to_samples
from gateway.modes.stream_input import StreamConfig
from gateway.modes.stream_messages import LONG_PAUSE_SECONDS, Message, StreamMessages
from gateway.modes.vad import StreamingVad

LEAD_SECONDS = 1.0  # audio kept before a trim point: Whisper needs a moment of lead-in
# Trim once the buffer is longer than this. Every step encodes all of it: 4 streams on a 1 s
# beat held 8-12 s each between sentences, and their rounds outgrew the beat.
TRIM_AFTER_SECONDS = 4.0
# A gap at least this long between a committed word and the next word is a place to cut too,
# inside a segment: Whisper writes sentences said without a long pause as one segment, and a
# buffer cut only at segment ends kept them all.
CUT_AT_GAP_SECONDS = 0.3
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
PAUSE_HEARD_SECONDS = 1.0  # how much of a long pause (LONG_PAUSE_SECONDS) a window keeps
# Speech the model heard less than this of, up to the end of what it heard, and gave no words
# for, is kept for the next step: Whisper leaves out a word cut off at a window's end. Heard
# longer without words, it is a hum the detector took for speech, and goes.
CUT_OFF_SPEECH_SECONDS = 2.0
# A step whose only speech past the committed words is the end of their own stretch, reaching
# less than this past them (the detector's padding, and Whisper ending a word's timestamp
# early), and which the model itself takes for silence (Whisper's no-speech threshold), heard
# no new words: what it writes there is made up. tiny.en wrote "Thank you." over the last
# 0.3 s of JFK's "country" and the pause after it, on 2 of 5 phases of a 1 s beat.
COMMITTED_TAIL_SECONDS = 1.0
NO_SPEECH_THRESHOLD = 0.6
# Times that match at the committed end within this are the same: word times are rounded to
# the millisecond, and a buffer cut there starts a hair after it (a sum of float cuts).
CUT_TOLERANCE_SECONDS = 0.01
# A stream whose audio has come this far ahead of the wall clock is a recording sent as fast
# as it goes, not a person speaking: its reads go at the file priority, behind the streams
# someone is waiting on (a WebSocket flood otherwise doubled the live finals' latency).
AHEAD_OF_REAL_TIME_SECONDS = WINDOW_SECONDS


# The `reason` of a `skipped` message for the audio a failed read left unheard
FAILURE_REASONS: dict[type[AsrError], str] = {
    AsrFailed: "model_error",
    AsrRejected: "rejected",
    AsrBusy: "overload",
}


@dataclass(frozen=True)
class FinalRead:
    """What the read at the end of a stream got: its words (stream time), how far it got
    (stream time), and why it stopped short (a `skipped` reason; None: it read it all)."""

    words: list[Word] | None
    until: float
    failure: str | None


class StreamSession:
    """The step policy of one live stream: the WebSocket handler appends audio, calls `step`
    on the beat (after `drop_backlog`) and `finish` at the end, and sends what they return."""

    def __init__(
        self,
        backend: WindowReader,
        config: StreamConfig,
        *,
        min_new_audio_s: float,
        vad: StreamingVad | None = None,
        on_model_seconds: Callable[[float], None] | None = None,
        logprobs: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.began: float | None = None  # `clock()` at the first audio
        self.config = config
        self.min_new_audio_s = min_new_audio_s  # a step with less new audio waits a beat
        self.on_model_seconds = on_model_seconds  # told how long each step's model call took
        self.audio = StreamBuffer(vad or StreamingVad())
        self.agreement = LocalAgreement()
        self.messages = StreamMessages(logprobs)  # finals with their words' logprobs
        self.stepped_at = 0.0  # `audio.received` at the last step
        self.segments: list[Segment] = []  # the last hypothesis, in stream time
        self.heard_until = 0.0  # end of the audio the model has transcribed so far
        self.speech_end = 0.0  # stream time where the last step's new speech ends
        # the last step's window start (stream time) and its segments as the model gave them
        self.last_read: tuple[float, tuple[Segment, ...]] = (-1.0, ())

    def append(self, samples: np.ndarray) -> None:
        if self.began is None:
            self.began = self.clock()
        self.audio.append(samples)

    @property
    def priority(self) -> Priority:
        """The stream priority while audio comes about as fast as it is spoken; the file
        priority once it is more than AHEAD_OF_REAL_TIME_SECONDS ahead."""
        elapsed = 0.0 if self.began is None else self.clock() - self.began
        live = self.audio.received - elapsed <= AHEAD_OF_REAL_TIME_SECONDS
        return Priority.STREAM if live else Priority.FILE

    @property
    def buffered_seconds(self) -> float:
        """Audio held for the model: at most a window and what came during a step, from a
        client that sends in real time."""
        return self.audio.held_seconds

    @property
    def step_due(self) -> bool:
        return self.audio.received - self.stepped_at >= self.min_new_audio_s

    async def step(self) -> list[Message]:
        """Transcribe what is uncommitted; the messages to send (final, then partial)."""
        self.stepped_at = self.audio.received
        hypothesis = await self._hypothesis()
        if hypothesis is None:
            self._drop_silence(until=self.audio.end)
            return self.messages.partials([])
        committed = self.agreement.insert(hypothesis)
        if self._utterance_ended:
            # the utterance has ended: its words will not change with more audio
            committed += self.agreement.commit_through(self.speech_end)
        messages = self.messages.finals(committed)
        if self.agreement.tail:
            self._trim()
        else:
            # the model heard no words past the committed ones: what follows them is a pause
            self._drop_silence(until=self._wordless_until())
        return messages + self.messages.partials(self.agreement.tail)

    def drop_backlog(self, reason: str, keep_s: float = WINDOW_SECONDS) -> list[Message]:
        """Keep at most `keep_s` of audio (one window, before a step). A stream whose steps
        fall behind (overload) or fail (model unavailable) would otherwise buffer without
        bound: the oldest audio goes, words already heard in it are committed as they are,
        and the stretch the model never heard is reported as `skipped`."""
        keep_from = self.audio.end - keep_s
        if keep_from <= self.audio.start:
            return []
        messages = self.messages.finals(self.agreement.commit_through(keep_from))
        unheard_from = max(self.heard_until, self.messages.final_end, self.audio.start)
        self.audio.cut(keep_from)
        return messages + self.messages.skipped(unheard_from, keep_from, reason)

    async def finish(self, rest: np.ndarray) -> list[Message]:
        """End of stream, with the last samples (`rest`, the resampler's tail): read the
        buffer to its end, as file mode reads a chunk (a step's single pass may have stopped
        short of the end, even with no audio since), and make it all final. Where the model
        fails on the way, what it read and the last step's words are kept, and the rest is
        reported as `skipped`: nothing goes without a word."""
        self.append(rest)
        read = await self._read_to_end()
        if read.failure is None:
            finals = self.messages.finals(self.agreement.flush(read.words))
            return finals + self.messages.partials([])
        # the last step's words past where the read stopped were decoded too: keep them
        later = [word for word in self.agreement.tail if word.start >= read.until]
        finals = self.messages.finals(self.agreement.flush([*(read.words or []), *later]))
        unheard_from = max(read.until, self.heard_until, self.messages.final_end)
        skipped = self.messages.skipped(unheard_from, self.audio.end, read.failure)
        return finals + skipped + self.messages.partials([])

    def _options(self) -> TranscribeOptions:
        # Only the client's prompt: conditioned on its own committed text, Whisper "continues"
        # it and skips words still in the buffer (measured on jfk.flac: "can do for your"
        # lost after a trim), which LocalAgreement then cannot recover.
        return TranscribeOptions(
            language=self.config.language,
            prompt=self.config.model_prompt,
            word_timestamps=True,
            # the words' probabilities only where finals carry their logprobs (the Realtime
            # API's): otherwise word timing skips the vocabulary product over every token
            word_times_only=not self.messages.logprobs,
            low_latency=True,
        )

    def _window_end(self, regions: list[tuple[float, float]], length: int) -> float | None:
        """Where this step's window ends (stream time) in the first `length` buffered samples,
        whose speech is `regions`, noting where its last speech ends; None when they hold no
        speech after the committed words. The buffer keeps committed audio as lead-in;
        without new speech a step would only transcribe that again, and the pause after it
        would grow unchecked. The window stops in the first long pause after the new speech:
        what follows it is the next step's."""
        new = [
            r for r in regions if r[1] > self.agreement.committed_end + NEW_SPEECH_MARGIN_SECONDS
        ]
        if not new:
            return None
        last = new[0]
        for region in new[1:]:
            if region[0] - last[1] >= LONG_PAUSE_SECONDS:
                self.speech_end = last[1]
                return last[1] + PAUSE_HEARD_SECONDS
            last = region
        self.speech_end = last[1]
        return self.audio.start + length / SAMPLE_RATE

    @property
    def _utterance_ended(self) -> bool:
        """Whether the audio the last step heard ends in a pause (not the buffer, which has
        grown while the model worked) and its hypothesis can be trusted without a second."""
        return (
            not any(segment.failed_checks for segment in self.segments)
            and self.heard_until - self.audio.start >= PAUSE_COMMIT_MIN_BUFFER_SECONDS
            and self.heard_until - self.speech_end >= PAUSE_SECONDS
        )

    def _only_a_committed_tail(self, regions: list[tuple[float, float]]) -> bool:
        """Whether the speech in `regions` past the committed words is only the end of the
        stretch they were said in (less than COMMITTED_TAIL_SECONDS past them)."""
        if not self.agreement.committed:
            return False
        committed_end = self.agreement.committed_end
        return all(
            start <= committed_end + CUT_TOLERANCE_SECONDS
            and end < committed_end + COMMITTED_TAIL_SECONDS
            for start, end in regions
            if end > committed_end + NEW_SPEECH_MARGIN_SECONDS
        )

    async def _hypothesis(self) -> list[Word] | None:
        """Transcribe the buffer; None when it holds no new speech (nothing sent to the model)."""
        await self.audio.catch_up()  # every stream's frames, scored while the loop serves on
        # as it is now (frames keep arriving while the model works), up to any frames the
        # detector has not caught up with (a flood's: the next step's)
        buffer = self.audio.scored_samples
        regions = self.audio.speech_regions(buffer.size)
        window_end = self._window_end(regions, buffer.size)
        if window_end is None:
            return None
        only_a_tail = self._only_a_committed_tail(regions)
        end = to_samples(window_end - self.audio.start)
        start = max(end - int(WINDOW_SECONDS * SAMPLE_RATE), 0)
        window = buffer[start:end]
        held_from = self.audio.start
        offset = held_from + start / SAMPLE_RATE
        # the last step read from the same sample: what it wrote is this step's draft
        last_offset, last_segments = self.last_read
        draft = last_segments if last_offset == offset else ()
        started = time.monotonic()
        result = await self.backend.transcribe(
            window, replace(self._options(), draft=draft), priority=self.priority
        )
        self.last_read = (offset, result.segments)
        if self.on_model_seconds is not None:
            self.on_model_seconds(time.monotonic() - started)
        self.heard_until = offset + window.size / SAMPLE_RATE
        self.segments = [segment.shifted(offset) for segment in result.segments]
        if only_a_tail and self.segments:
            if min(s.no_speech_prob for s in self.segments) > NO_SPEECH_THRESHOLD:
                self.segments = []  # made up over a pause: the step heard no words
        words = [word for segment in self.segments for word in segment.words]
        if self.audio.start > held_from:
            # audio dropped while the model worked (`drop_backlog`) was reported skipped, and
            # its words go with it. Only then: word times are rounded to the millisecond, so
            # a first word starting at the window's first sample could fall a hair before the
            # buffer's start, and was lost ("The long journey" final as "long journey").
            words = [word for word in words if word.start >= self.audio.start]
        return before_decoding_loop(words)

    async def _read_to_end(self) -> FinalRead:
        """The buffer read as file mode reads a file, decodes retried and a window's
        unfinished end read again (a single low-latency pass wrote "She called" for "She
        called his name many times."), but with the steps' short encoder context: a full
        window cost more and was not more accurate (many streams stopping together wait for
        these reads); up to the first window the model fails on, if it does."""
        await self.audio.catch_up()
        buffer = self.audio.samples
        progress = transcribe_audio(
            self.backend,
            buffer,
            replace(self._options(), low_latency=False, short_context=True),
            window_seconds=WINDOW_SECONDS,
            in_flight=2,
            priority=self.priority,
            found=self.audio.speech_map(buffer.size),  # the steps' scores, not scored again
        )
        reports: list[FileProgress] = []
        failure = None
        try:
            async for report in progress:
                reports.append(report)
        except AsrError as exc:
            failure = FAILURE_REASONS.get(type(exc), "model_unavailable")
        transcript = assemble(reports, buffer.size / SAMPLE_RATE)
        words = [word.shifted(self.audio.start) for word in transcript.words] or None
        read = reports[-1].processed if reports else 0.0
        return FinalRead(words, self.audio.start + read, failure)

    def _trim(self) -> None:
        """Cut the buffer, less the lead-in, at the last end of committed words: of a segment
        wholly committed, or of a committed word before a gap (once the buffer is long enough
        for that to matter); `drop_backlog` bounds it when that is not enough."""
        if self.audio.held_seconds <= TRIM_AFTER_SECONDS:
            return
        committed_until = self.agreement.committed_end + CUT_TOLERANCE_SECONDS
        words = [word for segment in self.segments for word in segment.words]
        ends = [s.end for s in self.segments if s.end <= committed_until] + [
            word.end
            for word, after in pairwise(words)
            if word.end <= committed_until and after.start - word.end >= CUT_AT_GAP_SECONDS
        ]
        if ends:
            self.audio.cut(max(ends) - LEAD_SECONDS)

    def _wordless_until(self) -> float:
        """After a step that heard no new words: how far the buffer is a pause. Up to where
        the model listened (frames that came in meanwhile are unheard), except speech it
        heard only the start of; and on to the next speech when only silence lies between."""
        # what the detector has scored: asking for more would score every stream's frames
        # that came during the step with the event loop waiting
        regions = self.audio.speech_regions(self.audio.scored_length)
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
        self.audio.cut(max(until - LEAD_SECONDS, self.agreement.committed_end))
