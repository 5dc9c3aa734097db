"""The audio of one live stream that the model may still need, placed in stream time.

Stream time is seconds since the stream's first sample; `start` is the stream time of the
buffer's first sample and moves forward as audio is cut off the front. Frames are kept as
they come and joined when the buffer is next read: one copy per step, not one per frame (a
client sending one-sample frames would otherwise cost a copy of the whole buffer each). The
voice detector scores each frame once, as it arrives.
"""

from __future__ import annotations

import numpy as np

from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import SpeechMap, StreamingVad, VadConfig

DEFAULT_VAD = VadConfig()


def to_samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


class StreamBuffer:
    def __init__(self, vad: StreamingVad) -> None:
        self.vad = vad
        self.start = 0.0  # stream time of the first buffered sample
        self.received = 0.0  # seconds of audio received since the stream began
        self._joined = np.zeros(0, np.float32)
        self._pending: list[np.ndarray] = []

    def append(self, samples: np.ndarray) -> None:
        self._pending.append(samples)
        self.received += samples.size / SAMPLE_RATE
        self.vad.accept(samples)

    @property
    def samples(self) -> np.ndarray:
        """Everything buffered, as one array (a snapshot: appends after this do not change it)."""
        if self._pending:
            self._joined = np.concatenate([self._joined, *self._pending])
            self._pending = []
        return self._joined

    def _unscored_offset(self) -> int | None:
        """Where in the buffer the frames the detector has not scored begin; None if none."""
        unscored_from = self.vad.unscored_from
        return None if unscored_from is None else max(unscored_from - to_samples(self.start), 0)

    @property
    def scored_length(self) -> int:
        """How many buffered samples, from the first, the detector has scored: all of them
        once `catch_up` is done, unless frames came faster than it scored them (a flood's).
        Found without joining frames."""
        held = to_samples(self.held_seconds)
        offset = self._unscored_offset()
        return held if offset is None else min(offset, held)

    @property
    def scored_samples(self) -> np.ndarray:
        """`samples` (a snapshot), the first `scored_length` of them."""
        samples = self.samples
        offset = self._unscored_offset()
        return samples if offset is None else samples[:offset]

    async def catch_up(self) -> None:
        """Until the detector has scored the frames received so far, off the event loop."""
        await self.vad.catch_up()

    @property
    def end(self) -> float:
        """Stream time just past the last sample received (found without joining frames)."""
        return self.received

    @property
    def held_seconds(self) -> float:
        return self.end - self.start

    def speech_regions(
        self, length: int | None = None, config: VadConfig = DEFAULT_VAD
    ) -> list[tuple[float, float]]:
        """The detector's speech regions in the first `length` buffered samples (default:
        all), in stream time."""
        first = to_samples(self.start)
        length = to_samples(self.held_seconds) if length is None else length
        return [
            (self.start + a / SAMPLE_RATE, self.start + b / SAMPLE_RATE)
            for a, b in self.vad.regions(first, first + length, config)
        ]

    def speech_map(self, length: int, config: VadConfig = DEFAULT_VAD) -> SpeechMap:
        """What the detector found in the first `length` buffered samples, as file mode
        scores a file (`SpeechMap`), from the scores the stream already has."""
        first = to_samples(self.start)
        return self.vad.speech_map(first, first + length, config)

    def split_off(self, at: float) -> np.ndarray:
        """Remove and return the buffered audio from stream time `at` on (a turn ends there
        and the rest begins the next one)."""
        samples = self.samples
        keep = max(0, min(to_samples(at - self.start), samples.size))
        rest = samples[keep:].copy()
        self._joined = samples[:keep]
        self.received = self.start + keep / SAMPLE_RATE
        return rest

    def cut(self, at: float) -> None:
        """Drop buffered audio before stream time `at`."""
        samples = self.samples
        count = max(0, min(to_samples(at - self.start), samples.size))
        self._joined = samples[count:]
        self.start += count / SAMPLE_RATE
        self.vad.forget_before(to_samples(self.start))
