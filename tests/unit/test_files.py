"""When file mode reads a window again (gateway.modes.files.read_window), over a scripted model."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.contract import Priority, TranscribeOptions, WindowResult
from gateway.core.transcript import Segment
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.files import read_window
from gateway.modes.windows import Window

SR = SAMPLE_RATE
WINDOW = Window(pieces=((0, 20 * SR),), speech=((1 * SR, 19 * SR),))


class ScriptedModel:
    """Writes `text` over the whole of whatever it is sent, at log-probability `logprob`."""

    def __init__(self, text: str, logprob: float) -> None:
        self.text, self.logprob, self.calls = text, logprob, []

    async def transcribe(self, audio, options, *, priority):
        self.calls.append(audio.size / SR)
        segment = Segment(0.0, audio.size / SR, self.text, self.logprob, 0.1, 1.5, 0.0)
        return WindowResult(self.text, "en", (segment,))


async def read(model: ScriptedModel) -> tuple[Segment, ...]:
    audio = np.zeros(20 * SR, np.float32)
    scores = np.full(20 * SR // 512 + 1, 0.9, np.float32)
    scores[10 * SR // 512] = 0.05  # a pause in the middle: the halves are cut there
    result = await read_window(
        model, audio, WINDOW, TranscribeOptions(), scores=scores, priority=Priority.FILE
    )
    return result.segments


async def test_a_confident_window_with_too_few_words_is_read_again_in_halves() -> None:
    model = ScriptedModel(" The conference on two fades in.", logprob=-0.4)
    segments = await read(model)
    assert model.calls[0] == 20.0 and len(model.calls) > 1
    assert sorted(model.calls[1:3]) == pytest.approx([10.0, 10.0], abs=0.04)  # the halves
    assert segments[0].start == 0.0 and segments[-1].end == 20.0


async def test_a_window_the_model_cannot_make_out_is_kept_as_it_is() -> None:
    """Below Whisper's log-probability threshold after the whole fallback (babble, 0 dB):
    halves fare no better."""
    model = ScriptedModel(" Hmm.", logprob=-1.6)
    segments = await read(model)
    assert model.calls == [20.0]
    assert [s.text for s in segments] == [" Hmm."]


class EndsEarlyModel:
    """Closes its last segment 2 s before the end of whatever it is sent (the speech runs
    on to the end, as at the end of a stream stopped mid-breath)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def transcribe(self, audio, options, *, priority):
        length = audio.size / SR
        self.calls.append(length)

        def words(start: float, end: float) -> str:  # two a second, as people speak
            return "".join(f" w{round(start * 2) + k}" for k in range(round((end - start) * 2)))

        halves = (
            Segment(0.0, length / 2, words(0.0, length / 2), -0.2, 0.1, 1.5, 0.0),
            Segment(length / 2, length - 2.0, words(length / 2, length - 2), -0.2, 0.1, 1.5, 0.0),
        )
        return WindowResult("".join(s.text for s in halves), "en", halves)


async def test_a_rest_read_again_that_ends_where_the_read_before_did_is_final() -> None:
    model = EndsEarlyModel()
    audio = np.zeros(20 * SR, np.float32)
    scores = np.full(20 * SR // 512 + 1, 0.9, np.float32)
    result = await read_window(
        model, audio, WINDOW, TranscribeOptions(), scores=scores, priority=Priority.FILE
    )
    # the first read leaves 1 s of speech after its last segment (18 s): read again from
    # that segment's start (10 s); that read closes at 18 s too, so it is final
    assert model.calls == [20.0, 10.0]
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 10.0), (10.0, 15.0), (15.0, 18.0)]
