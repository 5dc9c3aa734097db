"""What the modes ask of a speech-to-text backend, and what they get back.

File mode and live streams send one window of 16 kHz mono audio at a time with the options
below and a priority; any class with the methods of `AsrBackend` can serve them (the Triton
pool in production, a scripted model in the route and protocol tests). Nothing here knows how
the backend runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

import numpy as np

from gateway.core.transcript import Segment


class Priority(IntEnum):
    """Which work the backend serves first when both wait: the lower value."""

    STREAM = 1  # a live stream's step: someone is waiting for the words
    FILE = 2  # a window of an upload


@dataclass(frozen=True)
class TranscribeOptions:
    """What a caller wants from one window of audio."""

    language: str | None = None  # ISO code or name; None: the model detects it
    task: str = "transcribe"  # or "translate" (multilingual models)
    prompt: str | None = None  # conditions the decoder: previous text, names, jargon
    temperature: float = 0.0  # first temperature of the model's fallback schedule
    word_timestamps: bool = False
    # the words' times without their probabilities, where nobody reads how sure the model was
    # of them (live steps without logprobs, diarization placing words): word timing is
    # cheaper by the vocabulary product
    word_times_only: bool = False
    logprobs: bool = False  # each segment's text tokens with their log-probabilities
    # speed over the last bit of accuracy (live streams): a shorter encoder context, and a
    # decode that is not retried at higher temperatures when it fails Whisper's checks
    low_latency: bool = False
    # the shorter encoder context alone, decoded as a file window is (a stream's end read)
    short_context: bool = False
    # an earlier result's segments for audio from the same first sample (a stream's previous
    # step): the model checks them first and keeps what its own decode agrees with, which
    # only saves it decoding steps (the result is the one it gets without them)
    draft: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class WindowResult:
    """One window's text; segment times are seconds from the window's first sample."""

    text: str
    language: str
    segments: tuple[Segment, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ServedModel:
    """The weights a backend serves, as its model server reports them."""

    weights: str  # the export's name: "tiny.en", "base", ...
    multilingual: bool  # hears ~99 languages and translates them to English; else English only


def is_multilingual(weights: str) -> bool:
    """Whisper's English-only weights are the ones named `*.en` (tiny.en ... medium.en); every
    other name is multilingual. An export keeps the name it was made from."""
    return not weights.endswith(".en")


class AsrError(Exception):
    """A window the backend did not transcribe; the subclasses say whose fault it was."""


class AsrUnavailable(AsrError):
    """The backend cannot be reached, or its model is not ready: the window certainly did
    not run, so another replica may take it, and the caller may try again later."""


class AsrBusy(AsrUnavailable):
    """The backend is up but overloaded: its queue for the model is full, or the window
    waited there longer than the queue allows. It did not run; the replica is not down."""


class AsrInterrupted(AsrUnavailable):
    """The call failed after it may have reached the model (a deadline, a connection lost
    mid-call): not sent again elsewhere, which could double the work under overload."""


class AsrRejected(AsrError):
    """The backend refused this input (e.g. a language the model does not know)."""


class AsrFailed(AsrError):
    """The model failed on this input: a fault on the server's side, not the client's. The
    message is for the log; clients get a generic one."""


@dataclass(frozen=True)
class SpeakerEmbeddings:
    """The speaker model's answer for one piece of audio: an L2-normalised embedding per
    window of `window_seconds`, each starting at its entry of `starts` (seconds from the
    piece's first sample)."""

    embeddings: np.ndarray  # [windows, 256] float32
    starts: np.ndarray  # [windows] float32
    window_seconds: float = 1.6


class SpeakerBackend(Protocol):
    """What diarization asks of a backend (the Triton model `speaker`)."""

    async def embed_speakers(self, audio: np.ndarray) -> SpeakerEmbeddings:
        """Speaker embeddings of float32 16 kHz samples (at most 600 s); raises an
        `AsrError`, as `AsrBackend.transcribe` does."""
        ...


class WindowReader(Protocol):
    """What file mode asks of a backend: windows read."""

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        """One window of float32 samples (at most 30 s) to text; raises an `AsrError`."""
        ...


class AsrBackend(WindowReader, Protocol):
    async def is_ready(self) -> bool:
        """Whether a window sent now would be served (checked now, not cached)."""
        ...

    def describe(self) -> dict[str, object]:
        """What `/readyz` shows: at least "model" and "backend" (where it runs)."""
        ...

    async def served_model(self) -> ServedModel:
        """The weights served now, asked of the model server (not cached); raises
        `AsrUnavailable` when no server can say."""
        ...


class ModelBackend(AsrBackend, SpeakerBackend, Protocol):
    """Both models behind one backend, as the gateway holds it: Whisper and the speaker model
    (the Triton client and pool; a scripted backend in the tests of routes)."""
