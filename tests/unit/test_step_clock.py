"""The shared beat of live streams: aligned for every stream, its period following the load."""

from __future__ import annotations

import asyncio

import pytest

from gateway.modes.step_clock import StepClock


def test_streams_asking_at_different_times_get_the_same_beat() -> None:
    clock = StepClock(1.0, 3.0)
    first = clock.next_beat(100.0)
    assert first == 101.0
    assert clock.next_beat(100.2) == clock.next_beat(100.9) == first
    assert clock.next_beat(101.0) == 102.0


def test_the_period_follows_step_times_within_its_bounds() -> None:
    clock = StepClock(1.0, 3.0)
    assert clock.period_s == 1.0  # idle: as often as allowed
    for _ in range(30):
        clock.record(2.0)  # steps take 2 s: beats every 2.2 s (10 % headroom)
    assert clock.period_s == pytest.approx(2.2, abs=0.01)
    for _ in range(30):
        clock.record(10.0)  # overloaded: never slower than the configured step
    assert clock.period_s == 3.0
    for _ in range(30):
        clock.record(0.1)
    assert clock.period_s == 1.0


async def test_waiters_wake_together_on_the_beat() -> None:
    clock = StepClock(0.2, 0.2)
    loop = asyncio.get_running_loop()

    async def woken_at(delay: float) -> float:
        await asyncio.sleep(delay)
        await clock.follower().wait()
        return loop.time()

    times = await asyncio.gather(woken_at(0.0), woken_at(0.05), woken_at(0.12))
    assert max(times) - min(times) < 0.03


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        StepClock(3.0, 1.0)


def test_a_beat_handed_out_stays_when_the_period_changes() -> None:
    """Streams ask for the next beat one by one, each after recording its step's time, so the
    period changes between their questions: they must still meet on one beat (one batch)."""
    clock = StepClock(1.0, 3.0)
    beat = clock.next_beat(0.0)
    for _ in range(100):  # a hundred beats at the minimum period
        beat = clock.next_beat(beat)
    assert beat == pytest.approx(101.0)
    asked_at = beat - 0.1
    firsts = []
    for step_s in (1.5, 1.6, 1.55, 1.4):  # four streams' steps, recorded in turn
        clock.record(step_s)
        firsts.append(clock.next_beat(asked_at))
        asked_at += 0.01
    assert firsts == [beat] * 4
    # from there the grid follows the new period
    assert clock.period_s > 1.0
    assert clock.next_beat(beat) == pytest.approx(beat + clock.period_s)


def test_beats_no_stream_asked_for_are_skipped() -> None:
    clock = StepClock(1.0, 1.0)
    assert clock.next_beat(10.0) == 11.0
    assert clock.next_beat(14.5) == 15.0  # on the grid, not 11 + 1 or 14.5 + 1


def test_a_round_that_ran_past_the_next_beat_steps_again_at_once() -> None:
    """Four streams woke on a beat and their round took 1.2 s on a 1 s period: waiting for
    the beat after the one they missed would cost each of them almost a whole period. They
    ask as each finishes with its answer, and meet on one beat a moment away (one batch)."""
    clock = StepClock(1.0, 3.0)
    beat = clock.next_beat(10.0)
    assert beat == 11.0
    late = [clock.next_beat(12.2 + 0.01 * index, last=beat) for index in range(4)]
    assert late == [pytest.approx(12.25)] * 4
    # the grid follows the late round: the next beat a period after it
    assert clock.next_beat(12.9, last=12.25) == pytest.approx(13.25)


def test_a_stream_on_time_or_late_past_the_grace_keeps_to_the_grid() -> None:
    clock = StepClock(1.0, 1.0)
    beat = clock.next_beat(10.0)
    assert clock.next_beat(11.6, last=beat) == 12.0  # its step ended before the next beat
    assert clock.next_beat(12.0, last=12.0) == 13.0  # woke on it with too little new audio
    assert clock.next_beat(13.7, last=12.0) == 14.0  # missed 13.0 by more than the grace


def test_a_late_round_steps_at_once_while_the_grid_is_ahead() -> None:
    """A stream without speech asks again on every beat (no model call) and moves the grid
    on; a round of the others that ran long still meets on a make-up beat, and the grid
    stays."""
    clock = StepClock(1.0, 1.0)
    beat = clock.next_beat(10.0)
    assert clock.next_beat(11.0, last=beat) == 12.0  # the silent stream
    assert clock.next_beat(12.0, last=12.0) == 13.0  # and again: beat 13.0 is handed out
    assert clock.next_beat(12.2, last=beat) == pytest.approx(12.25)  # the round from 11.0
    assert clock.next_beat(12.23, last=beat) == pytest.approx(12.25)
    assert clock.next_beat(12.3, last=12.0) == 13.0  # the silent stream: the grid stays
    # the late round, late again against 13.0, gets the next make-up beat
    assert clock.next_beat(13.2, last=12.25) == pytest.approx(13.25)
