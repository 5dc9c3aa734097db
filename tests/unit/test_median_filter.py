"""Word timing's median filter (`whisper_adaptations.median_filter`), which replaces
openai-whisper's sort-based one on a CPU: the same values, to the bit."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import torch
import whisper.timing

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from whisper_adaptations import _UPSTREAM_MEDIAN_FILTER, MEDIAN_OF_7, median_filter


def test_the_exchanges_leave_the_median_of_any_seven_values_in_the_middle() -> None:
    """By the 0-1 principle, a comparator network that selects the median of every input
    of 0s and 1s selects the median of every input."""
    for bits in itertools.product((0, 1), repeat=7):
        values = list(bits)
        for low, high in MEDIAN_OF_7:
            values[low], values[high] = (
                min(values[low], values[high]),
                max(values[low], values[high]),
            )
        assert values[3] == sorted(bits)[3], bits


@pytest.mark.parametrize(
    "shape",
    [(6, 110, 750), (4, 3, 12), (1, 1, 4), (2, 5, 3)],  # the last: too short to filter
)
def test_the_same_values_as_openai_whispers_filter(shape) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    weights = torch.randn(shape, generator=generator)
    ties = torch.randint(0, 3, shape, generator=generator).float()  # many equal values
    for x in (weights, ties):
        assert torch.equal(median_filter(x, 7), _UPSTREAM_MEDIAN_FILTER(x, 7))


def test_other_widths_are_upstreams() -> None:
    x = torch.randn(2, 4, 40)
    assert torch.equal(median_filter(x, 5), _UPSTREAM_MEDIAN_FILTER(x, 5))


def test_word_timing_calls_it() -> None:
    """`whisper.timing.find_alignment` looks the filter up by name when it runs."""
    assert whisper.timing.median_filter is median_filter
