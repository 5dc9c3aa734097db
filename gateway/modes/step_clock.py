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
"""

from __future__ import annotations

import asyncio
import math

# The period follows the time rounds take, with headroom so steps do not run back to back.
# 1.1, not 1.25: 4 streams on a 1 s beat on 2 AVX2 cores, alternated five times, final
# p50 / p95 1.77-2.14 / 2.83-3.58 s against 1.93-2.43 / 2.88-3.51 s (benchmarks/README.md)
_HEADROOM = 1.1
_SMOOTHING = 0.3  # weight of the newest round in the moving average


class StepClock:
    def __init__(self, min_period_s: float, max_period_s: float) -> None:
        if not 0 < min_period_s <= max_period_s:
            raise ValueError("need 0 < min_period_s <= max_period_s")
        self.min_period_s = min_period_s
        self.max_period_s = max_period_s
        self._round_s = 0.0  # moving average of how long a step takes
        self._beat: float | None = None  # the latest beat handed out

    @property
    def period_s(self) -> float:
        return min(max(self._round_s * _HEADROOM, self.min_period_s), self.max_period_s)

    def next_beat(self, now: float) -> float:
        """The first beat after `now`: the one already handed out while it is ahead, else
        the first after `now` on whole periods from it (beats missed while no stream asked
        are skipped)."""
        if self._beat is None:
            self._beat = now
        if self._beat <= now:
            period = self.period_s
            self._beat += (math.floor((now - self._beat) / period) + 1) * period
        return self._beat

    async def beat(self) -> None:
        """Sleep until the next beat."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self.next_beat(loop.time()) - loop.time()))

    def record(self, step_s: float) -> None:
        """How long a step took (queueing at Triton included): the period follows it."""
        self._round_s += _SMOOTHING * (step_s - self._round_s)
