"""Wake-up requests for Triton's dynamic batcher, which can sleep through an execution's end.

With priority levels or a queue policy (the `whisper` config has both) Triton's batcher cannot
prefetch: while the instance runs a batch, the batcher waits for it to be free, and its only
notice, the finished batch's callback, comes before the instance waits for work again. When
the batcher looks first it sleeps out a fixed 500 ms unless another request arrives
(`dynamic_batch_scheduler.cc`, Triton 2.51 and core's main branch). Requests that queued
during the execution then wait with the model idle: bursts of 64 and 128 windows lost 1.0-1.6 s
so (benchmarks/README.md, "a missed wake-up measured").

A request that arrives once the instance waits for work wakes the batcher. So when an answer
comes from a server and, a few milliseconds later, a request this client sent before that
answer is still out there (it may have queued during the execution that answered), a wake-up
follows: a request the model answers at once with empty outputs, decoding nothing (request
parameter `wake_up`). It has the inputs and priority of the oldest such request, so that it
rides in that request's batch (Triton ends a batch at the first request whose set of inputs
differs: a wake-up of another kind would cut it short), or runs alone in a millisecond. Its
own answer counts as an answer: an execution of wake-ups alone may end with work queued.
Requests sent after the answer need none: they reached the batcher after that execution.

One execution's answers reach this client one by one, each after the event loop's other work,
over more than a few milliseconds when the loop is busy. So the check waits until the answers
have paused for the delay (at most `WAKE_UP_MAX_WAIT_S`): an answer read late would otherwise
count as a request still out, and bring a wake-up that rides in the next batch as a row that
decodes nothing (a composite upload of 16 windows sent 2-6 wake-ups, where 2 could be needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from gateway.core.contract import AsrError

logger = logging.getLogger(__name__)

# How long the answers must pause before the check: long enough for the instance to wait for
# work again after its answers went out, short beside the 500 ms it saves. However the answers
# keep coming, a check at most `WAKE_UP_MAX_WAIT_S` after the first.
WAKE_UP_DELAY_S = 0.005
WAKE_UP_MAX_WAIT_S = 0.025
WAKE_UP_PARAMETER = "wake_up"  # the request parameter the `whisper` model answers at once
WAKE_UP_REQUEST_ID = "wake-up"  # how they show in Triton's trace and logs

Request = TypeVar("Request")


class BatcherWakeUps(Generic[Request]):
    """Wake-up requests to one server's model, for the requests this client has out there.

    `send` sends a wake-up like the request it is given (the same inputs and priority), so
    that Triton batches it with requests of that kind instead of cutting their batch short:
    its dynamic batcher ends a batch at the first request whose set of inputs differs."""

    def __init__(
        self,
        send: Callable[[Request], Awaitable[object]],
        *,
        delay_s: float = WAKE_UP_DELAY_S,
        max_wait_s: float = WAKE_UP_MAX_WAIT_S,
    ) -> None:
        self._send = send
        self._delay_s = delay_s
        self._max_wait_s = max_wait_s
        self._last_answer_at = 0.0  # monotonic s
        self._out: dict[int, tuple[float, Request]] = {}  # sent at (monotonic s), request
        self._keys = itertools.count()
        self._scheduled: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.sent = 0

    @contextlib.contextmanager
    def awaiting(self, request: Request) -> Iterator[None]:
        """Around one request to the model: answers that come while it is out may be
        followed by a wake-up."""
        key = next(self._keys)
        self._out[key] = (time.monotonic(), request)
        try:
            yield
        finally:
            del self._out[key]
            self._answered()

    def _answered(self) -> None:
        if not self._out or self._closed:
            return
        self._last_answer_at = time.monotonic()
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().create_task(
                self._wake_up(answered_at=self._last_answer_at)
            )
            self._tasks.add(self._scheduled)
            self._scheduled.add_done_callback(self._tasks.discard)

    async def _wake_up(self, answered_at: float) -> None:
        """A wake-up if a request sent before the first answer is still out once the answers
        pause: it may have queued during the execution that answered. One sent after that
        answer woke the batcher itself."""
        last_check_at = answered_at + self._max_wait_s
        while (now := time.monotonic()) < (
            check_at := min(self._last_answer_at + self._delay_s, last_check_at)
        ):
            await asyncio.sleep(check_at - now)
        self._scheduled = None  # answers from here on schedule the next one
        oldest = next(
            (request for sent_at, request in self._out.values() if sent_at < answered_at), None
        )
        if oldest is None:
            return
        self.sent += 1
        try:
            await self._send(oldest)
        except AsrError as exc:
            # the server down or its queue full: the requests awaited hear of it themselves,
            # and wake-ups stop until one of them is answered
            logger.debug("batcher wake-up failed: %s", exc)
            return
        self._answered()  # an execution of wake-ups alone may have ended with work queued

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
