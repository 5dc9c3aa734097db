"""The gateway's file pipeline on decoded samples, as an upload runs it once its audio is
decoded (`gateway.modes.files`), and when its windows go to the model: shared by the
benchmarks that drive many uploads at once without HTTP (`benchmarks.gpu`,
`benchmarks.transport`)."""

from __future__ import annotations

import statistics
import time

import numpy as np

from gateway.core.contract import Priority, TranscribeOptions, WindowReader, WindowResult
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.files import collect, transcribe_audio
from gateway.server.settings import Settings

ENGLISH = TranscribeOptions(language="en")


async def transcribe(
    backend: WindowReader,
    settings: Settings,
    audio: np.ndarray,
    options: TranscribeOptions = ENGLISH,
) -> tuple[str, float, list]:
    """What an upload of these samples returns (text, wall s, segments), through the
    gateway's own window pipeline with the gateway's `settings`."""
    started = time.perf_counter()
    progress = transcribe_audio(
        backend,
        audio,
        options,
        window_seconds=settings.window_seconds,
        in_flight=settings.file_windows_in_flight,
    )
    transcript = await collect(progress, audio.size / SAMPLE_RATE)
    return transcript.text, time.perf_counter() - started, list(transcript.segments)


class SendTimes:
    """The backend of a level of concurrent uploads, noting when each window went to the
    model (seconds after `started`): windows that go out over most of the wall were held up
    on the sending side (each upload's voice detection), windows that all go out at once
    waited for the model."""

    def __init__(self, backend: WindowReader, started: float) -> None:
        self._backend = backend
        self._started = started
        self.sent: list[float] = []

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        self.sent.append(time.perf_counter() - self._started)
        return await self._backend.transcribe(audio, options, priority=priority)

    def spread(self) -> dict[str, float]:
        """When the first window, half of them, and the last went out."""
        return {
            "first": min(self.sent),
            "median": statistics.median(self.sent),
            "last": max(self.sent),
        }


def sent_spread(sent: dict[str, float]) -> str:
    """`SendTimes.spread()` as "first / median / last"."""
    return f"{sent['first']:.2f} / {sent['median']:.2f} / {sent['last']:.2f}"
