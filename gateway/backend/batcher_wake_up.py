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

# Long enough for the instance to wait for work again after its answers went out, and for
# one execution's answers to share one wake-up; short beside the 500 ms it saves.
WAKE_UP_DELAY_S = 0.005
WAKE_UP_PARAMETER = "wake_up"  # the request parameter the `whisper` model answers at once
WAKE_UP_REQUEST_ID = "wake-up"  # how they show in Triton's trace and logs

Request = TypeVar("Request")


class BatcherWakeUps(Generic[Request]):
    """Wake-up requests to one server's model, for the requests this client has out there.

    `send` sends a wake-up like the request it is given (the same inputs and priority), so
    that Triton batches it with requests of that kind instead of cutting their batch short:
    its dynamic batcher ends a batch at the first request whose set of inputs differs."""

    def __init__(
        self, send: Callable[[Request], Awaitable[object]], *, delay_s: float = WAKE_UP_DELAY_S
    ) -> None:
        self._send = send
        self._delay_s = delay_s
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
        if self._out and self._scheduled is None and not self._closed:
            self._scheduled = asyncio.get_running_loop().create_task(
                self._wake_up(answered_at=time.monotonic())
            )
            self._tasks.add(self._scheduled)
            self._scheduled.add_done_callback(self._tasks.discard)

    async def _wake_up(self, answered_at: float) -> None:
        """A wake-up if a request sent before the answer is still out: it may have queued
        during the execution that answered. One sent after it woke the batcher itself."""
        await asyncio.sleep(self._delay_s)
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
