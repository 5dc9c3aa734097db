"""A speech-to-text backend for tests that need no Triton: `create_app(settings,
backend=ScriptedBackend())` serves every route and the WebSocket with it.

It "hears" the audio it is sent: stretches louder than `SOUND_DBFS` (pauses shorter than
`MERGE_GAP_SECONDS` bridged) are what it transcribes, silence gives no text. What it says is
either

- heard: one segment per stretch of sound and a word for every started `WORD_SECONDS` of
  it, named by its place in the window (" w1 w2 w3"), or
- scripted: `script[k]` for the k-th call (the last one repeats), its words spread evenly
  over the sound, as one segment from the first sound to the last.

Either way the answer depends only on the audio and the call's number, so a test can predict
it. Words are given, as Whisper's, with a leading space, and only when the call asks for word
timestamps; each word is one token, whose log-probability (`TOKEN_LOGPROB`) comes when the call
asks for logprobs. Every call is recorded (`calls`); `ready = False` makes `/readyz` answer 503;
`failure` (any `AsrError`) is raised by every call until cleared;
`languages` refuses others as the real model refuses a language it does not know, and
`weights` named `*.en` refuse to translate, as English-only weights do; `hold()`
keeps calls waiting until `release()` (admission, overload and shutdown tests).

Its speaker embeddings (`embed_speakers`, as the model `speaker` answers: windows of 1.6 s
every 0.77 s) tell two voices apart by bandwidth: a window with at least `HIGH_BAND_SHARE` of
its energy above `HIGH_BAND_HZ` is one voice (full-band speech, as jfk.flac), any other window
the second (speech low-passed below 1 kHz, as over an old telephone line).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gateway.core.contract import (
    AsrError,
    AsrRejected,
    AsrUnavailable,
    Priority,
    ServedModel,
    SpeakerEmbeddings,
    TranscribeOptions,
    WindowResult,
    is_multilingual,
)
from gateway.core.transcript import Segment, TokenLogprob, Word
from gateway.modes.audio import SAMPLE_RATE

SOUND_DBFS = -30.0  # 20 ms frames at least this loud are sound (jfk.flac's floor: -38 dBFS)
MERGE_GAP_SECONDS = 0.3  # shorter quiet between sounds is inside one stretch
WORD_SECONDS = 0.5  # heard: a word per started half second of sound
_FRAME = int(0.02 * SAMPLE_RATE)
AVG_LOGPROB = -0.2  # confident: the gateway's checks never doubt the text for it
COMPRESSION_RATIO = 1.2
NO_SPEECH_PROB = 0.01
TOKEN_LOGPROB = -0.25  # each word is one token, with this log-probability
HIGH_BAND_HZ, HIGH_BAND_SHARE = 1500, 0.01  # embed_speakers: what makes a full-band voice
SPEAKER_WINDOW_S, SPEAKER_STEP_S = 1.6, 0.77  # as the model `speaker` serves them


def low_passed(audio: np.ndarray, hertz: float = 1000.0) -> np.ndarray:
    """`audio` as the second voice of `embed_speakers`: nothing above `hertz`."""
    spectrum = np.fft.rfft(audio)
    spectrum[np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE) > hertz] = 0
    return np.fft.irfft(spectrum, audio.size).astype(np.float32)


@dataclass(frozen=True)
class Call:
    """One `transcribe` call as the backend got it, and what it answered."""

    seconds: float  # length of the audio sent
    options: TranscribeOptions
    priority: Priority
    text: str = ""  # the answer's text; "" when the call raised (or heard nothing)


def sounds(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches of sound in 16 kHz audio."""
    count = audio.size // _FRAME
    if count == 0:
        return []
    frames = audio[: count * _FRAME].astype(np.float64).reshape(count, _FRAME)
    loud = np.sqrt(np.mean(frames**2, axis=1)) >= 10 ** (SOUND_DBFS / 20)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    stretches: list[tuple[float, float]] = []
    for first, last in zip(edges[::2], edges[1::2], strict=True):
        start, end = first * _FRAME / SAMPLE_RATE, last * _FRAME / SAMPLE_RATE
        if stretches and start - stretches[-1][1] < MERGE_GAP_SECONDS:
            start = stretches.pop()[0]
        stretches.append((start, end))
    return stretches


def _spread(texts: Sequence[str], start: float, end: float) -> list[Word]:
    """`texts` as words of equal length from `start` to `end`."""
    step = (end - start) / len(texts)
    return [
        Word(f" {text}", round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9)
        for i, text in enumerate(texts)
    ]


def _segment(words: Sequence[Word], options: TranscribeOptions) -> Segment:
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text="".join(word.word for word in words),
        avg_logprob=AVG_LOGPROB,
        no_speech_prob=NO_SPEECH_PROB,
        compression_ratio=COMPRESSION_RATIO,
        temperature=options.temperature,
        tokens=tuple(range(1000, 1000 + len(words))),
        words=tuple(
            replace(word, probability=None) if options.word_times_only else word for word in words
        )
        if options.word_timestamps
        else (),
        logprobs=tuple(
            TokenLogprob(word.word, TOKEN_LOGPROB, tuple(word.word.encode("utf-8")))
            for word in words
        )
        if options.logprobs
        else (),
    )


def hear(audio: np.ndarray, options: TranscribeOptions) -> tuple[Segment, ...]:
    """Heard mode: a segment per stretch of sound, a word per started `WORD_SECONDS`."""
    segments, number = [], 0
    for start, end in sounds(audio):
        count = max(1, math.ceil((end - start) / WORD_SECONDS - 1e-9))
        names = [f"w{number + i + 1}" for i in range(count)]
        number += count
        segments.append(_segment(_spread(names, start, end), options))
    return tuple(segments)


def say(text: str, audio: np.ndarray, options: TranscribeOptions) -> tuple[Segment, ...]:
    """Scripted mode: `text` spread over the sound in `audio` (nothing heard: no segment)."""
    stretches = sounds(audio)
    if not stretches or not text.split():
        return ()
    return (_segment(_spread(text.split(), stretches[0][0], stretches[-1][1]), options),)


class ScriptedBackend:
    """A `ModelBackend` (gateway/core/contract.py) whose answers a test can predict."""

    def __init__(
        self,
        script: Sequence[str] = (),
        *,
        language: str = "en",
        languages: Collection[str] | None = None,
        model: str = "scripted",
        weights: str = "scripted",
    ) -> None:
        self.script = list(script)  # empty: heard mode
        self.language = language  # what it "detects" when the call names none
        self.languages = None if languages is None else frozenset(languages)
        self.model = model
        self.weights = weights  # what it says it serves: "*.en" for English-only weights
        self.ready = True
        self.failure: AsrError | None = None
        self.calls: list[Call] = []
        self.speaker_calls: list[float] = []  # seconds of audio of each embed_speakers call
        self._open = asyncio.Event()
        self._open.set()
        self._waiting = 0
        self._changed = asyncio.Event()  # set whenever a call starts or stops waiting

    # --- the ModelBackend protocol --------------------------------------------------------

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        number = len(self.calls)
        self.calls.append(Call(audio.size / SAMPLE_RATE, options, priority))
        await self._pass_gate()
        if self.failure is not None:
            raise self.failure
        if self.languages is not None and options.language not in (None, *self.languages):
            raise AsrRejected(f"unknown language {options.language!r}")
        if options.task == "translate" and not is_multilingual(self.weights):
            raise AsrRejected(
                "TASK 'translate' needs a multilingual model; this one is English-only"
            )
        if self.script:
            segments = say(self.script[min(number, len(self.script) - 1)], audio, options)
        else:
            segments = hear(audio, options)
        text = "".join(segment.text for segment in segments)
        self.calls[number] = Call(audio.size / SAMPLE_RATE, options, priority, text)
        return WindowResult(text, options.language or self.language, segments)

    async def embed_speakers(self, audio: np.ndarray) -> SpeakerEmbeddings:
        """A window every 0.77 s (the last at least half audio), each embedded as one of two
        voices: full-band or low-passed (see the module's docstring)."""
        self.speaker_calls.append(audio.size / SAMPLE_RATE)
        await self._pass_gate()
        if self.failure is not None:
            raise self.failure
        duration = audio.size / SAMPLE_RATE
        starts = [0.0]
        while starts[-1] + SPEAKER_STEP_S + SPEAKER_WINDOW_S / 2 <= duration:
            starts.append(round(starts[-1] + SPEAKER_STEP_S, 3))
        embeddings = np.zeros((len(starts), 256), np.float32)
        for row, start in enumerate(starts):
            first = int(start * SAMPLE_RATE)
            piece = audio[first : first + int(SPEAKER_WINDOW_S * SAMPLE_RATE)].astype(np.float64)
            power = np.abs(np.fft.rfft(piece)) ** 2
            hertz = np.fft.rfftfreq(piece.size, 1 / SAMPLE_RATE)
            total = float(power.sum())
            full_band = total > 0 and power[hertz > HIGH_BAND_HZ].sum() / total >= HIGH_BAND_SHARE
            embeddings[row, 0 if full_band else 1] = 1.0
        return SpeakerEmbeddings(embeddings, np.array(starts, np.float32), SPEAKER_WINDOW_S)

    async def is_ready(self) -> bool:
        return self.ready

    def describe(self) -> dict[str, object]:
        return {"model": self.model, "backend": "scripted, in process"}

    async def served_model(self) -> ServedModel:
        if not self.ready:
            raise AsrUnavailable("the scripted model is not ready")
        return ServedModel(self.weights, is_multilingual(self.weights))

    # --- what tests control -----------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Calls held by `hold()` now."""
        return self._waiting

    def hold(self) -> None:
        """Calls from now on wait (recorded already) until `release()`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def until_waiting(self, count: int = 1, timeout: float = 10.0) -> None:
        """Return once at least `count` calls are held."""
        async with asyncio.timeout(timeout):
            while self._waiting < count:
                self._changed.clear()
                await self._changed.wait()

    async def _pass_gate(self) -> None:
        if self._open.is_set():
            return
        self._waiting += 1
        self._changed.set()
        try:
            await self._open.wait()
        finally:
            self._waiting -= 1
            self._changed.set()

    def texts(self) -> list[str]:
        """What each call answered, in call order."""
        return [call.text for call in self.calls]
