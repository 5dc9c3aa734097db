"""Packing speech into windows, their time map, splitting, and the checks on a window's text
(pure, no Triton)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from gateway.core.transcript import Segment, Word
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import FRAME_SAMPLES
from gateway.modes.windows import (
    Window,
    plan_windows,
    split_window,
    unfinished_rest,
    window_problems,
)

SR = SAMPLE_RATE


def samples(*regions: tuple[float, float]) -> list[tuple[int, int]]:
    return [(int(a * SR), int(b * SR)) for a, b in regions]


def seconds(pieces) -> list[tuple[float, float]]:
    return [(a / SR, b / SR) for a, b in pieces]


def scores_for(total_seconds: float, quiet: list[float] = ()) -> np.ndarray:
    """Frame scores: speech everywhere but at the `quiet` instants."""
    scores = np.full(int(total_seconds * SR) // FRAME_SAMPLES + 1, 0.9, np.float32)
    for t in quiet:
        scores[int(t * SR) // FRAME_SAMPLES] = 0.05
    return scores


def segment(start: float, end: float, text: str) -> Segment:
    return Segment(
        start=start,
        end=end,
        text=text,
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        compression_ratio=1.2,
        temperature=0.0,
        tokens=(1,),
        words=(Word(text, start, end, 0.9),),
    )


def plan(regions, total_seconds: float, window_seconds: float = 30.0) -> list[Window]:
    return plan_windows(
        samples(*regions),
        samples(*regions),
        scores_for(total_seconds),
        window=int(window_seconds * SR),
        total=int(total_seconds * SR),
    )


def test_short_utterances_are_packed_with_long_pauses_shortened() -> None:
    # three 4 s utterances 3 s apart: one window, a second of lead, the pauses cut to 1 s
    windows = plan([(5, 9), (12, 16), (19, 23)], 30)
    assert len(windows) == 1
    assert seconds(windows[0].pieces) == [(4.0, 9.5), (11.5, 16.5), (18.5, 23.0)]
    assert windows[0].samples / SR == pytest.approx(15.0)


def test_short_pauses_stay_whole_and_windows_leave_room_at_the_end() -> None:
    regions = [(t, t + 2.7) for t in np.arange(1.0, 100.0, 3.0)]  # 0.3 s pauses
    windows = plan(regions, 101)
    assert len(windows) == 5  # 24-24.7 s each: one more 3 s sentence would pass 27 s
    assert all(24 * SR <= w.samples <= 27 * SR for w in windows[:-1])  # 30 s less the tail
    # cut only in pauses, and the windows tile the speech: nothing left out, nothing twice
    assert all(len(w.pieces) == 1 for w in windows)
    bounds = [w.pieces[0] for w in windows]
    assert bounds[0][0] == 0 and bounds[-1][1] == samples(regions[-1])[0][1]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(cut in {end for _, end in samples(*regions)} for _, cut in bounds)


def test_a_region_longer_than_a_window_is_cut_at_its_quietest_frame() -> None:
    scores = scores_for(70, quiet=[22.0, 47.0])
    windows = plan_windows(
        samples((0, 70)), samples((0, 70)), scores, window=30 * SR, total=70 * SR
    )
    cuts = [w.pieces[0][0] / SR for w in windows[1:]]
    assert cuts == [pytest.approx(22.0, abs=0.04), pytest.approx(47.0, abs=0.04)]
    assert windows[0].pieces[0][0] == 0 and windows[-1].pieces[-1][1] == 70 * SR


def test_window_times_map_back_to_the_file() -> None:
    window = Window(pieces=tuple(samples((10, 15), (20, 25))), speech=())
    assert window.file_time(0.0) == 10.0
    assert window.file_time(4.0) == 14.0
    assert window.file_time(6.0) == 21.0
    assert window.file_time(12.0) == 25.0  # past the end: the end
    moved = window.to_file(segment(4.5, 7.0, " across the cut"))
    assert (moved.start, moved.end) == (14.5, 22.0)
    assert (moved.words[0].start, moved.words[0].end) == (14.5, 22.0)


def test_a_window_splits_at_the_pause_nearest_its_middle() -> None:
    pieces = tuple(samples((0, 8), (10, 16), (18, 27)))
    window = Window(pieces=pieces, speech=tuple(samples((1, 26))))
    first, second = split_window(window, scores_for(30))
    assert seconds(first.pieces) == [(0, 8), (10, 16)]
    assert seconds(second.pieces) == [(18, 27)]
    assert seconds(first.speech) == [(1, 16)] and seconds(second.speech) == [(18, 26)]


def test_one_piece_splits_at_its_quietest_frame_and_short_windows_do_not() -> None:
    window = Window(pieces=tuple(samples((0, 20))), speech=tuple(samples((0, 20))))
    first, second = split_window(window, scores_for(20, quiet=[12.0]))
    assert first.end / SR == pytest.approx(12.0, abs=0.04) == second.start / SR
    assert split_window(Window(tuple(samples((0, 7))), ()), scores_for(7)) is None


SPEECH = Window(pieces=tuple(samples((0, 20))), speech=tuple(samples((1, 9), (10, 19))))


def test_a_window_whose_text_covers_its_speech_passes() -> None:
    segments = [segment(1, 9, " " + "word " * 20), segment(10, 19, " other " * 20)]
    assert window_problems(segments, SPEECH, prompt=None) == []


def test_too_few_words_for_the_speech_fail() -> None:
    one_segment = [segment(0, 20, " The conference on two fades in.")]
    assert "6 words for 17.0 s of speech at 0.0-20.0 s" in window_problems(
        one_segment, SPEECH, None
    )


def test_one_segment_with_too_few_words_for_its_speech_fails() -> None:
    """Enough words in the window, but one segment wrote "C" for 8 s of speech."""
    segments = [segment(0, 9, " " + "word " * 30), segment(9, 18, " C"), segment(18, 19, " end")]
    assert window_problems(segments, SPEECH, None) == ["1 words for 8.0 s of speech at 9.0-18.0 s"]


def test_speech_no_segment_covers_fails() -> None:
    segments = [segment(1, 9, " " + "word " * 30)]
    assert window_problems(segments, SPEECH, None) == ["speech without words at 10.0-19.0 s"]


def test_a_sentence_written_twice_fails() -> None:
    text = " The boy was there when the sun rose. A rod is used to catch pink salmon."
    again = " The boy was there when the sun rose. Then he ate his bread at the long table."
    segments = [segment(1, 9, text), segment(10, 19, again)]
    assert window_problems(segments, SPEECH, None) == ["a sentence written twice"]


def test_text_that_echoes_the_prompt_fails() -> None:
    prompt = "Glue the sheet to the dark blue background."
    segments = [segment(1, 9, f" {prompt} word word word word word"), segment(10, 19, " w " * 20)]
    assert window_problems(segments, SPEECH, prompt) == ["the prompt written out"]


def test_text_still_repetitive_after_the_fallback_fails_and_unlikely_text_does_not() -> None:
    looping = Segment(
        start=1,
        end=19,
        text=" so " * 40,
        avg_logprob=-1.3,
        no_speech_prob=0.1,
        compression_ratio=3.1,
        temperature=1.0,
    )
    assert "repetitive at every temperature" in window_problems([looping], SPEECH, None)
    unlikely = [
        Segment(
            start=1,
            end=9,
            text=" hard to hear" * 8,
            avg_logprob=-1.6,
            no_speech_prob=0.1,
            compression_ratio=1.9,
            temperature=1.0,
        ),
        segment(10, 19, " " + "word " * 20),
    ]
    assert window_problems(unlikely, SPEECH, None) == []


def test_a_full_window_is_cut_at_its_longest_pause_in_its_last_quarter() -> None:
    # sentences with 0.5 s pauses, a 4 s pause at 21.5 s (the window 21.5 s full): cut there,
    # not after the last sentence that fits (at 30 s the next one would start mid-speech)
    regions = [(1, 5.5), (6, 10.5), (11, 15.5), (16, 21.5), (25.5, 27), (27.5, 30), (30.5, 35)]
    windows = plan(regions, 36)
    assert [w.pieces[-1][1] / SR for w in windows[:-1]] == [21.5]
    assert windows[1].pieces[0][0] / SR == 24.5  # with its second of lead-in


def test_a_long_pause_early_in_a_window_does_not_cut_it() -> None:
    # the 6 s pause comes 18 s in: a window cut there would be 2/3 full, and a file would
    # cost a third more windows; the window is filled and cut at the last pause that fits
    regions = [(1, 5.5), (6, 10.5), (11, 15.5), (16, 18), (24, 26), (26.5, 30), (30.5, 35)]
    windows = plan(regions, 36)
    assert [w.pieces[-1][1] / SR for w in windows[:-1]] == [30.0]
    assert all(w.samples <= 27 * SR for w in windows)


def test_one_long_region_is_cut_in_its_last_pause_that_fits() -> None:
    # a 60 s region of sentences 0.5 s apart (the detector's padding joins them): cut in the
    # middle of the last pause of the window's last quarter, not at an earlier one
    pauses = np.arange(3.0, 60.0, 3.0)
    scores = scores_for(60)
    for t in pauses:
        scores[int(t * SR) // FRAME_SAMPLES : int((t + 0.5) * SR) // FRAME_SAMPLES] = 0.05
    windows = plan_windows(
        samples((0, 60)), samples((0, 60)), scores, window=30 * SR, total=60 * SR
    )
    first_end = windows[0].pieces[-1][1] / SR
    assert first_end == pytest.approx(24.25, abs=0.04)  # the pause at 24-24.5 s; 27 s is past
    assert windows[1].pieces[0][0] / SR == pytest.approx(first_end)


def test_a_decode_that_stopped_early_leaves_its_last_segment_to_read_again() -> None:
    window = Window(pieces=tuple(samples((0, 10), (12, 20))), speech=tuple(samples((0.5, 19.5))))
    said = [segment(0.5, 6.0, " One two three."), segment(6.0, 15.0, " Four five six.")]
    # the last segment ends long before the speech does: read again from its start
    done, rest = unfinished_rest(said, window)
    assert seconds(done.pieces) == [(0, 6.0)] and seconds(rest.pieces) == [(6.0, 10), (12, 20)]
    # no closing timestamp: the same
    stopped = [said[0], replace(segment(6.0, 20.0, " Four five"), complete=False)]
    assert unfinished_rest(stopped, window)[1].start / SR == 6.0
    # a closed last segment that reaches the end of the speech is final
    assert unfinished_rest([said[0], segment(6.0, 19.4, " Four five six.")], window) is None
    # a last segment that starts the window leaves nothing to gain
    assert unfinished_rest([segment(0.5, 15.0, " One to six.")], window) is None
    # a rest read again whose closed last segment ends where the read before ended its own
    assert unfinished_rest(said, window, ended_before=15.1) is None
    assert unfinished_rest(said, window, ended_before=12.0) is not None
