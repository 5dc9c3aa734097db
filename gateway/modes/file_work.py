"""How much file work reaches the model at once while live streams run.

A live stream's step waits behind the batch the model is decoding when it arrives (Triton
puts it first in the queue, but does not interrupt an execution): on 2 CPU cores a batch of
16 file windows takes ~8 s. So while a stream is open, the windows of file priority (uploads,
and streams read ahead of real time) go through one gate, a few at a time, whoever sends
them; executions stay short, and the streams' steps are answered within ~2.5 s of arriving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from gateway.core.contract import (
    ModelBackend,
    Priority,
    ServedModel,
    SpeakerEmbeddings,
    TranscribeOptions,
    WindowResult,
)


class WindowSlots:
    """At most `limit()` windows at once; the limit is asked each time a window waits for a
    slot, so it may change while they run (a window over a lowered limit runs on)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._running = 0
        self._freed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._freed:
            await self._freed.wait_for(lambda: self._running < max(self._limit(), 1))
            self._running += 1

    async def __aexit__(self, *_: object) -> None:
        async with self._freed:
            self._running -= 1
            self._freed.notify_all()


class FileWorkGate:
    """A `ModelBackend` whose file-priority windows pass through `slots`; live steps and
    speaker embeddings go straight through."""

    def __init__(self, backend: ModelBackend, slots: WindowSlots) -> None:
        self._backend = backend
        self._slots = slots

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        if priority != Priority.FILE:
            return await self._backend.transcribe(audio, options, priority=priority)
        async with self._slots:
            return await self._backend.transcribe(audio, options, priority=priority)

    async def embed_speakers(self, audio: np.ndarray) -> SpeakerEmbeddings:
        return await self._backend.embed_speakers(audio)

    async def is_ready(self) -> bool:
        return await self._backend.is_ready()

    def describe(self) -> dict[str, object]:
        return self._backend.describe()

    async def served_model(self) -> ServedModel:
        return await self._backend.served_model()
