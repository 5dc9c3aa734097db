"""`TurnDetector`: where speech starts and stops in a live stream, over a scripted detector
(loud noise is speech), fed at real-time pace and all at once."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.modes.stream_buffer import StreamBuffer
from gateway.modes.turns import TurnConfig, TurnDetector
from gateway.modes.vad import CATCH_UP_ROUNDS, StreamingVad
from tests.unit.test_streaming import LoudnessScorer, sound

RATE = 16000
FRAME = 512 / RATE  # the detector's frame: times below are within one frame of the truth


def stream(*parts: tuple[float, bool]) -> np.ndarray:
    return np.concatenate([sound(seconds, loud, seed=i) for i, (seconds, loud) in enumerate(parts)])


async def fed(audio: np.ndarray, detector: TurnDetector, chunk_s: float) -> list:
    buffer = StreamBuffer(StreamingVad(scorer=LoudnessScorer()))
    events = []
    step = int(chunk_s * RATE)
    for start in range(0, audio.size, step):
        buffer.append(audio[start : start + step])
        events += [(type(e).__name__, e.at, buffer.received) for e in await detector.update(buffer)]
    return events


@pytest.mark.parametrize("chunk_s", [0.1, 100.0], ids=["real-time", "all-at-once"])
async def test_two_turns_start_and_stop_where_the_speech_does(chunk_s) -> None:
    audio = stream((1.0, False), (2.0, True), (1.5, False), (1.0, True), (1.0, False))
    config = TurnConfig(prefix_padding_s=0.3, silence_s=0.5)
    events = await fed(audio, TurnDetector(config), chunk_s)
    assert [name for name, _, _ in events] == [
        "SpeechStarted",
        "SpeechStopped",
        "SpeechStarted",
        "SpeechStopped",
    ]
    expected = [1.0 - 0.3, 3.0 + 0.5, 4.5 - 0.3, 5.5 + 0.5]
    assert [at for _, at, _ in events] == pytest.approx(expected, abs=2 * FRAME)
    if chunk_s < 1:  # at real-time pace each stop is told as soon as the silence has passed
        for name, at, told in events:
            if name == "SpeechStopped":
                assert told - at < 0.1 + FRAME


async def test_a_pause_shorter_than_the_silence_does_not_end_the_turn() -> None:
    audio = stream((0.5, False), (1.0, True), (0.4, False), (1.0, True), (1.0, False))
    events = await fed(audio, TurnDetector(TurnConfig(silence_s=0.8)), 0.1)
    assert [name for name, _, _ in events] == ["SpeechStarted", "SpeechStopped"]


async def test_speech_still_going_has_started_but_not_stopped() -> None:
    detector = TurnDetector(TurnConfig())
    events = await fed(stream((0.5, False), (2.0, True)), detector, 0.1)
    assert [name for name, _, _ in events] == ["SpeechStarted"] and detector.speaking


async def test_the_prefix_padding_never_reaches_before_the_last_stop() -> None:
    audio = stream((1.0, True), (0.5, False), (1.0, True), (1.0, False))
    events = await fed(audio, TurnDetector(TurnConfig(prefix_padding_s=2.0, silence_s=0.5)), 0.1)
    starts = [at for name, at, _ in events if name == "SpeechStarted"]
    stops = [at for name, at, _ in events if name == "SpeechStopped"]
    assert starts[0] == 0.0 and starts[1] == pytest.approx(stops[0])


def test_a_higher_threshold_is_the_detectors() -> None:
    config = TurnConfig(threshold=0.8, silence_s=0.2)
    assert (config.vad.threshold, config.vad.pad_seconds) == (0.8, 0.0)
    assert config.vad.release == pytest.approx(0.65)
    assert config.vad.min_silence_seconds == 0.2


async def test_a_stop_waits_for_the_silence_to_be_scored() -> None:
    """Audio the detector has not scored yet (frames it could not catch up with) is not
    silence: the turn stops only once the frames that hold the pause are scored."""
    detector = TurnDetector(TurnConfig(silence_s=0.5))
    scorer = LoudnessScorer()
    buffer = StreamBuffer(StreamingVad(scorer=scorer))
    buffer.append(sound(1.0, True, seed=0))
    assert [type(e).__name__ for e in await detector.update(buffer)] == ["SpeechStarted"]
    scorer.catch_up_rounds = 0  # the scorer falls behind
    buffer.append(sound(1.0, False, seed=1))
    assert await detector.update(buffer) == []
    scorer.catch_up_rounds = CATCH_UP_ROUNDS
    buffer.append(sound(0.1, False, seed=2))
    events = await detector.update(buffer)
    assert [type(e).__name__ for e in events] == ["SpeechStopped"]
    assert events[0].at == pytest.approx(1.0 + 0.5, abs=2 * FRAME)
