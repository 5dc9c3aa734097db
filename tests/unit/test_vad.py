"""The energy voice-activity detector on real speech, silence and noise."""

from __future__ import annotations

import numpy as np

from gateway.audio import SAMPLE_RATE
from gateway.vad import speech_regions
from tests.conftest import DATA_DIR, load_audio


def test_silence_and_steady_noise_have_no_speech() -> None:
    assert speech_regions(np.zeros(5 * SAMPLE_RATE, np.float32), SAMPLE_RATE) == []
    noise = np.random.default_rng(1).standard_normal(5 * SAMPLE_RATE).astype(np.float32) * 0.01
    assert speech_regions(noise, SAMPLE_RATE) == []


def test_speech_between_silences_is_found_where_it_is() -> None:
    jfk = load_audio(DATA_DIR / "jfk.flac")
    gap = np.zeros(10 * SAMPLE_RATE, np.float32)
    audio = np.concatenate([gap, jfk, gap, jfk, gap])
    audio += np.random.default_rng(2).standard_normal(audio.size).astype(np.float32) * 3e-4
    regions = [(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in speech_regions(audio, SAMPLE_RATE)]
    assert regions[0][0] >= 10.0 - 0.35 and regions[-1][1] <= 42.0 + 0.35  # 0.3 s padding
    clip = jfk.size / SAMPLE_RATE
    covered = lambda t: any(a <= t <= b for a, b in regions)  # noqa: E731
    assert not covered(5.0) and not covered(10 + clip + 5) and not covered(2 * (10 + clip) + 5)
    assert covered(12.0) and covered(10 + clip + 10 + 2.0)
    assert all(b - a >= 0.1 for a, b in regions)


def test_pauses_between_sentences_split_regions() -> None:
    harvard = load_audio(DATA_DIR / "OSR_us_000_0034_8k.wav")
    regions = speech_regions(harvard, SAMPLE_RATE)
    assert 6 <= len(regions) <= 12  # ten sentences, some pauses shorter than the bridge
