"""`ModelCalls`: when a live session tells its client that the model cannot be reached.
Said once per outage; an outage ends when the model answers at all (busy, refusing or
failing included), not when a call raises nothing (a step over silence calls no model)."""

from __future__ import annotations

import numpy as np

from gateway.core.contract import (
    AsrBusy,
    AsrError,
    AsrFailed,
    AsrUnavailable,
    Priority,
    TranscribeOptions,
    WindowResult,
)
from gateway.server.live import ModelCalls

AUDIO = np.zeros(1600, np.float32)


class Answers:
    """A window reader that raises, or answers, as the test sets `next`."""

    def __init__(self) -> None:
        self.next: AsrError | None = None

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        if self.next is not None:
            raise self.next
        return WindowResult("", "en", ())


async def test_an_outage_is_said_once_and_ends_when_the_model_answers() -> None:
    said: list[tuple[str, str]] = []

    async def report(message: str, code: str) -> None:
        said.append((message, code))

    calls = ModelCalls(report)
    answers = Answers()
    reader = calls.reading(answers)

    async def step() -> list[dict]:
        await reader.transcribe(AUDIO, TranscribeOptions(), priority=Priority.STREAM)
        return []

    async def silent_step() -> list[dict]:
        return []  # nothing new to hear: no model call

    answers.next = AsrUnavailable("replica down")
    assert await calls.guarded(step()) == []
    await calls.guarded(silent_step())
    await calls.guarded(step())
    assert [code for _, code in said] == ["model_unavailable"]  # once for the outage
    assert calls.skip_reason == "model_unavailable"

    # a read to the end catches the failure itself and says so as `skipped`: still away,
    # and the outage already said
    async def read_to_end() -> list[dict]:
        try:
            await reader.transcribe(AUDIO, TranscribeOptions(), priority=Priority.STREAM)
        except AsrUnavailable:
            return [{"type": "skipped", "start": 0.0, "end": 1.0, "reason": "model_unavailable"}]
        return []

    assert (await calls.guarded(read_to_end()))[0]["reason"] == "model_unavailable"
    await calls.guarded(step())
    assert calls.unavailable and [code for _, code in said] == ["model_unavailable"]

    for answer in (AsrBusy("queue full"), AsrFailed("out of memory"), None):
        answers.next = AsrUnavailable("replica down")
        await calls.guarded(step())
        answers.next = answer
        await calls.guarded(step())
        assert not calls.unavailable, answer  # it answered: the outage is over
        assert calls.skip_reason == "overload"
        answers.next = AsrUnavailable("replica down")
        await calls.guarded(step())  # a new outage: said again
    assert [code for _, code in said if code == "model_unavailable"] == ["model_unavailable"] * 4
