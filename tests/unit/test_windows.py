"""Chunk planning and the sliding-window decisions of file mode (pure, no Triton)."""

from __future__ import annotations

import pytest

from gateway.transcript import Segment, Word
from gateway.windows import accept_window, plan_chunks, shift

RATE = 100  # samples per second: keeps the arithmetic readable


def samples(*regions: tuple[float, float]) -> list[tuple[int, int]]:
    return [(int(a * RATE), int(b * RATE)) for a, b in regions]


def segment(start: float, end: float, text: str = " words") -> Segment:
    return Segment(start=start, end=end, text=text, avg_logprob=-0.2, no_speech_prob=0.01,
                   compression_ratio=1.2, temperature=0.0, tokens=(1,),
                   words=(Word(text, start, end, 0.9),))


@pytest.mark.parametrize(
    ("regions", "expected"),
    [
        ([], []),
        # one region: starts with a second of lead-in, never before 0
        (samples((0.5, 9)), [(0, 9)]),
        (samples((5, 9)), [(4, 9)]),
        # short pauses stay inside a chunk, long ones split it
        (samples((2, 5), (5.5, 9), (20, 25)), [(1, 9), (19, 25)]),
        # the lead-in never reaches back into the previous chunk
        (samples((2, 5), (6.0, 9)), [(1, 5), (5, 9)]),
    ],
)
def test_chunks_split_at_long_pauses(regions, expected) -> None:
    chunks = plan_chunks(regions, split_pause=1 * RATE, lead=1 * RATE)
    assert [(c.start / RATE, c.end / RATE) for c in chunks] == expected
    assert [c.index for c in chunks] == list(range(len(expected)))


def test_a_segment_cut_by_the_window_edge_is_read_again() -> None:
    segments = [segment(10, 14), segment(14, 22), segment(22, 29.8)]
    kept, resume = accept_window(segments, window=(0, 30), chunk_end=55, speech=[(10, 55)])
    assert kept == segments[:2] and resume == 22


def test_the_last_window_of_a_chunk_keeps_everything() -> None:
    segments = [segment(40, 48), segment(48, 54.8)]
    kept, resume = accept_window(segments, window=(40, 55), chunk_end=55, speech=[(40, 54.9)])
    assert kept == segments and resume == 55


def test_speech_the_model_skipped_is_read_again() -> None:
    segments = [segment(0, 11)]  # the model stopped at 11 s, but speech goes on to 22 s
    kept, resume = accept_window(segments, window=(0, 22.4), chunk_end=22.4, speech=[(0, 11), (18.9, 22.1)])
    assert kept == segments and resume == 11


def test_timestamps_ending_a_little_early_are_not_a_missed_tail() -> None:
    segments = [segment(0, 10.6)]
    kept, resume = accept_window(segments, window=(0, 11.3), chunk_end=11.3, speech=[(0.2, 11.0)])
    assert kept == segments and resume == 11.3


def test_a_window_that_cannot_advance_keeps_what_it_has() -> None:
    one_long = [segment(5, 34.9)]  # no timestamp until the edge: nothing complete to keep
    kept, resume = accept_window(one_long, window=(5, 35), chunk_end=80, speech=[(5, 80)])
    assert kept == one_long and resume == 35
    kept, resume = accept_window([], window=(5, 35), chunk_end=80, speech=[(5, 80)])
    assert kept == [] and resume == 35


def test_shift_moves_segment_and_word_times() -> None:
    moved = shift(segment(1.0, 2.5), 30.0)
    assert (moved.start, moved.end) == (31.0, 32.5)
    assert (moved.words[0].start, moved.words[0].end) == (31.0, 32.5)
