"""The offline stream replay (`benchmarks.replay`) runs the steps of one beat as one model call,
as Triton's dynamic batcher runs them as one execution, and ends every stream."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from benchmarks import replay
from gateway.modes.audio import SAMPLE_RATE
from testsupport.clips import DATA_DIR, load_audio

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from transcriber import TranscriptionRequest, TranscriptionResult


class ScriptedTranscriber:
    """Stands in for `BatchTranscriber`: one word a second of each request's audio, every
    batch's size recorded."""

    text_tokens = 50256  # as tiny.en's: the steps' drafts are parsed against it
    low_latency_short_context = True  # as on a CPU

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.audio_seconds = 0.0  # of every request
        # of every request, as the encoder pads a short context: 5 s or more, in whole 5 s
        self.context_seconds = 0.0

    def transcribe(self, requests: Sequence[TranscriptionRequest]) -> list[TranscriptionResult]:
        self.batches.append(len(requests))
        for request in requests:
            seconds = request.audio.size / SAMPLE_RATE
            self.audio_seconds += seconds
            self.context_seconds += min(5 * math.ceil((seconds + 5) / 5), 30)
        return [self._result(request.audio.size / SAMPLE_RATE) for request in requests]

    @staticmethod
    def _result(seconds: float) -> TranscriptionResult:
        words = [
            {"word": f" w{i}", "start": float(i), "end": i + 0.5, "probability": 0.9}
            for i in range(int(seconds))
        ]
        text = "".join(str(word["word"]) for word in words)
        segment = {
            "start": 0.0,
            "end": seconds,
            "text": text,
            "avg_logprob": -0.1,
            "no_speech_prob": 0.0,
            "compression_ratio": 1.0,
            "temperature": 0.0,
            "words": words,
        }
        return TranscriptionResult(text.strip(), "en", [segment] if words else [])


def test_the_steps_of_a_beat_are_one_model_call_and_every_stream_ends() -> None:
    jfk = load_audio(DATA_DIR / "jfk.flac")
    scripted = ScriptedTranscriber()
    model = replay.InProcessModel(scripted, low_latency=True)  # type: ignore[arg-type]

    result = asyncio.run(replay.replay(jfk, model, 1.0, streams=2))

    assert model.executions == len(scripted.batches)
    # the second stream starts 1.5 s after the first, on the same beats: from then on both
    # streams' steps (and both reads at the end) go to the model together
    assert max(scripted.batches) == 2
    assert scripted.batches.count(2) >= 5
    assert sum(scripted.batches) > len(scripted.batches) + 4
    assert len(result.texts) == 2
    assert all(text.strip() for text in result.texts)
    assert result.word_latencies and min(result.word_latencies) > 0


def test_an_end_read_with_two_windows_in_flight_is_answered() -> None:
    """A stream that never steps (a beat longer than its audio) is read at its end as a file
    of more than one window, two at a time: both of them reach the model together."""
    jfk = load_audio(DATA_DIR / "jfk.flac")
    long_speech = np.concatenate([jfk, jfk, jfk, jfk])  # 44 s: two windows
    scripted = ScriptedTranscriber()
    model = replay.InProcessModel(scripted, low_latency=True)  # type: ignore[arg-type]

    result = asyncio.run(asyncio.wait_for(replay.replay(long_speech, model, 60.0), timeout=60))

    assert scripted.batches[0] == 2
    assert len(result.texts[0].split()) >= 40


def test_a_cost_model_charges_the_clock_its_own_time_and_replays_repeat_exactly() -> None:
    """With `--cost`, an execution takes the model's fixed + per-audio-second time on the
    virtual clock, whatever it took: two replays step alike, word latency for word latency."""
    jfk = load_audio(DATA_DIR / "jfk.flac")
    cost = replay.CostModel.parse("0.2,0.05")
    runs = []
    for _ in range(2):
        model = replay.InProcessModel(
            ScriptedTranscriber(),  # type: ignore[arg-type]
            low_latency=True,
            cost=cost,
        )
        runs.append((asyncio.run(replay.replay(jfk, model, 1.0, streams=2)), model))

    (first, model), (second, _) = runs
    assert first.word_latencies == second.word_latencies
    assert first.texts == second.texts
    scripted = model.transcriber
    assert model.charged == pytest.approx(0.2 * model.executions + 0.05 * scripted.audio_seconds)
    assert model.seconds < 0.2 * model.executions  # what the scripted model took: far less


def test_a_cost_by_context_charges_each_request_its_padded_encoder_context() -> None:
    jfk = load_audio(DATA_DIR / "jfk.flac")
    scripted = ScriptedTranscriber()
    model = replay.InProcessModel(
        scripted,  # type: ignore[arg-type]
        low_latency=True,
        cost=replay.CostModel.parse("0.1,0.01,context"),
    )

    asyncio.run(replay.replay(jfk, model, 1.0))

    assert scripted.context_seconds > scripted.audio_seconds + 5 * model.executions
    assert model.charged == pytest.approx(0.1 * model.executions + 0.01 * scripted.context_seconds)


@pytest.mark.parametrize("text", ["0.1", "0.1,0.01,frames", "a,0.01"])
def test_a_cost_model_that_is_not_one_refuses_to_parse(text: str) -> None:
    with pytest.raises(ValueError):
        replay.CostModel.parse(text)
