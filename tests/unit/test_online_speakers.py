"""Online clustering of a live stream's finals: labels stable for the life of the stream."""

from __future__ import annotations

import numpy as np

from gateway.core.online_speakers import OnlineSpeakers


def voice_windows(seed: int) -> np.ndarray:
    """Windows of voices 0, 1, 2 (orthogonal directions in 64-d), with some noise."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(np.random.default_rng(0).standard_normal((64, 3)))[0].T

    def windows(voice: int, count: int = 3) -> np.ndarray:
        rows = centres[voice] + 0.3 * rng.standard_normal((count, 64)) / 8
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return windows


def test_each_voice_keeps_its_label_for_the_life_of_the_stream() -> None:
    windows = voice_windows(1)
    speakers = OnlineSpeakers()
    turns = [0, 1, 0, 2, 1, 1, 0, 2]
    labels = [speakers.assign(windows(voice), 3.0) for voice in turns]
    assert labels == ["A", "B", "A", "C", "B", "B", "A", "C"]
    assert speakers.count == 3


def test_a_short_final_never_opens_a_speaker() -> None:
    windows = voice_windows(2)
    speakers = OnlineSpeakers()
    assert speakers.assign(windows(0), 3.0) == "A"
    assert speakers.assign(windows(1, count=1), 1.0) == "A"  # too short to be someone new
    assert speakers.assign(windows(1), 3.0) == "B"
    assert speakers.count == 2


def test_at_most_max_speakers() -> None:
    windows = voice_windows(3)
    speakers = OnlineSpeakers(max_speakers=2)
    assert [speakers.assign(windows(voice), 3.0) for voice in (0, 1, 2)][:2] == ["A", "B"]
    assert speakers.count == 2


def test_the_first_final_is_a_even_when_short() -> None:
    assert OnlineSpeakers().assign(voice_windows(4)(0, count=1), 0.5) == "A"
