"""benchmarks.vad's metrics: how detected regions cover a known speech mask, counted exactly on
small arrays; the old energy detector it measures, on a tone between silences."""

from __future__ import annotations

import numpy as np

from benchmarks.vad import Score, covered, energy_regions, score
from gateway.modes.audio import SAMPLE_RATE


def mask_of(size: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(size, bool)
    for start, end in ranges:
        mask[start:end] = True
    return mask


def test_covered_marks_the_regions_end_exclusive() -> None:
    assert covered(8, [(1, 3), (5, 6)]).tolist() == [0, 1, 1, 0, 0, 1, 0, 0]
    assert not covered(4, []).any()


def test_score_counts_missed_and_kept_samples() -> None:
    # speech: samples 2-5 and 10-13 (8 of 20); regions: 0-4 and 12-16
    mask = mask_of(20, [(2, 6), (10, 14)])
    result = score(mask, [(0, 4), (12, 16)])
    # missed: 4, 5, 10, 11 -> 4 of 8; kept: 0, 1, 14, 15 -> 4 of 12
    assert result == Score(speech_missed=0.5, non_speech_kept=4 / 12, sentences_lost=0, sentences=2)


def test_missed_and_kept_are_not_swapped() -> None:
    # one region covering all speech and some silence: nothing missed, something kept
    mask = mask_of(10, [(4, 6)])
    generous = score(mask, [(2, 8)])
    assert generous.speech_missed == 0.0
    assert generous.non_speech_kept == 4 / 8
    # a region only over silence: all speech missed, a little silence kept
    wrong = score(mask, [(0, 1)])
    assert wrong.speech_missed == 1.0
    assert wrong.non_speech_kept == 1 / 8


def test_a_sentence_is_lost_when_less_than_half_is_covered() -> None:
    mask = mask_of(30, [(0, 10), (12, 22), (24, 28)])
    # first: 5 of 10 covered (kept); second: 4 of 10 (lost); third: none (lost)
    result = score(mask, [(5, 10), (18, 22)])
    assert (result.sentences_lost, result.sentences) == (2, 3)


def test_exact_cover_and_no_regions() -> None:
    mask = mask_of(12, [(3, 7)])
    assert score(mask, [(3, 7)]) == Score(0.0, 0.0, 0, 1)
    assert score(mask, []) == Score(1.0, 0.0, 1, 1)


def test_energy_detector_finds_a_tone_between_silences() -> None:
    silence = np.full(SAMPLE_RATE, 1e-4, np.float32)
    tone = (0.1 * np.sin(np.arange(SAMPLE_RATE) * 0.1)).astype(np.float32)
    audio = np.concatenate([silence, tone, silence])
    pad = int(0.3 * SAMPLE_RATE)
    assert energy_regions(audio) == [(SAMPLE_RATE - pad, 2 * SAMPLE_RATE + pad)]
    assert energy_regions(np.zeros(100, np.float32)) == []
