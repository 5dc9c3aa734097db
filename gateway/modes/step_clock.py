"""One beat for every live stream, so their steps reach Triton together.

Streams that step on their own schedule (every 3 s of *their* audio) reach the model one at a
time, each a batch of one, and N streams cost N executions. On a shared beat all due steps
arrive within milliseconds of each other and Triton's dynamic batcher runs them as one
execution: the encoder and every decoder step of the batch pay Python's and torch's fixed
costs once.

The beat's period can adapt to the load: as short as `min_period_s` while rounds of steps are
quick (at 1 s a lone stream shows partial text 1.4 s after the words, p50), stretching with the
time a round actually takes, up to `max_period_s` (the configured step); with both equal (the
default, 3 s) it is a fixed beat. A round that takes
longer than that means the streams are behind; each stream then drops its oldest audio
(`StreamSession.drop_backlog`) instead of queueing.

A beat, once handed out, is every stream's until it has passed: the next one is set from it
at the period of that moment. (Computed afresh from a fixed origin at whatever the period was
when each stream asked, the grid came apart as soon as the period rose above its minimum: a
period 1 % longer moves a beat 100 periods on by a whole period, and 4 streams on a 1 s beat
stepped at 2-4 instants within a second, each its own execution queued behind the others.)

A round that runs a little past the next beat steps again at once (`LATE_GRACE`: on a beat
of its own a moment away, `LATE_SETTLE`, so that it stays one execution), and the grid moves
to it. The period follows the rounds' average, so near capacity one round in a
while is late; waiting for the beat after it cost every stream of the round almost a whole
period, and those words were a run's slowest finals (4 streams on a 1 s beat on 2 AVX2 cores,
seven runs each: the slowest final above 4.2 s in four, against at most 3.23 s with the late
round stepping at once; benchmarks/README.md). Each stream follows the beat through a
`BeatFollower`, which knows the beat it last woke on.
"""

from __future__ import annotations

import asyncio

# The period follows the time rounds take, with headroom so steps do not run back to back.
# 1.1, not 1.25: 4 streams on a 1 s beat on 2 AVX2 cores, alternated five times, final
# p50 / p95 1.77-2.14 / 2.83-3.58 s against 1.93-2.43 / 2.88-3.51 s (benchmarks/README.md)
_HEADROOM = 1.1
_SMOOTHING = 0.3  # weight of the newest round in the moving average
# A stream whose step ran past the next beat by less than this share of a period steps at
# once, instead of waiting almost a period for the beat after it: near the beat's capacity a
# round a little longer than the period otherwise cost every stream in it a whole beat.
LATE_GRACE = 0.5
# ... on a beat of its own this share of a period ahead: every stream of the round asks as it
# finishes handling its answer (tens of ms apart with a hundred streams), and they must meet
# on one beat for Triton to batch them as one execution.
LATE_SETTLE = 0.05


class StepClock:
    def __init__(self, min_period_s: float, max_period_s: float) -> None:
        if not 0 < min_period_s <= max_period_s:
            raise ValueError("need 0 < min_period_s <= max_period_s")
        self.min_period_s = min_period_s
        self.max_period_s = max_period_s
        self._round_s = 0.0  # moving average of how long a step takes
        self._beat: float | None = None  # the latest beat handed out
        self._passed: float | None = None  # the one before it: the last that has passed
        self._make_up: float | None = None  # the latest beat of a round that missed one

    @property
    def period_s(self) -> float:
        return min(max(self._round_s * _HEADROOM, self.min_period_s), self.max_period_s)

    def next_beat(self, now: float, last: float | None = None) -> float:
        """The first beat after `now`: the one already handed out while it is ahead, else
        the first after `now` on whole periods from it (beats missed while no stream asked
        are skipped). A stream that woke on the beat `last` and has since missed a beat by
        less than LATE_GRACE of a period (its step ran long) gets a make-up beat instead, a
        moment away, shared with the others of its round."""
        if self._beat is None:
            self._beat = now
        period = self.period_s
        moved = self._beat <= now
        if moved:  # the first beat after now, on whole periods from the last one
            self._passed = self._beat + (now - self._beat) // period * period
            self._beat = self._passed + period
        missed = self._passed  # the last beat at or before now
        if (
            last is not None
            and missed is not None
            and last < missed
            and now - missed < LATE_GRACE * period
        ):
            return self._make_up_beat(now, period, moved)
        return self._beat

    def _make_up_beat(self, now: float, period: float, moved: bool) -> float:
        """The beat of a late round: the one set for it while it is ahead, else one
        LATE_SETTLE of a period from now, to which the grid moves unless a later beat is
        already handed out (`moved`: none is)."""
        if self._make_up is None or self._make_up < now:
            self._make_up = now + LATE_SETTLE * period
            if moved:
                self._beat = self._make_up
        return self._make_up

    def follower(self) -> BeatFollower:
        """A stream's own place on this beat."""
        return BeatFollower(self)

    def record(self, step_s: float) -> None:
        """How long a step took (queueing at Triton included): the period follows it."""
        self._round_s += _SMOOTHING * (step_s - self._round_s)


class BeatFollower:
    """One stream on the shared beat: remembers the beat it last waited for, so that a step
    that ran past the next one is made up at once (`StepClock.next_beat`)."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock
        self.last: float | None = None

    async def wait(self) -> None:
        """Sleep until the stream's next beat."""
        loop = asyncio.get_running_loop()
        self.last = self.clock.next_beat(loop.time(), self.last)
        await asyncio.sleep(max(0.0, self.last - loop.time()))
