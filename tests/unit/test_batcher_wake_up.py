"""When the gateway sends Triton's batcher a wake-up, and like which request: after an answer,
while a request sent before it is still out."""

from __future__ import annotations

import asyncio

from gateway.backend.batcher_wake_up import BatcherWakeUps
from gateway.core.contract import AsrUnavailable

DELAY_S = 0.01


class Server:
    """A model server as the client sees it: each request is answered when the test says; a
    wake-up at the end of the execution under way (or at once, failed, by a server that is
    down)."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.wake_ups: list[str] = []  # like which request each was sent
        self._execution_ended = asyncio.Event()

    async def wake_up(self, like: str) -> None:
        self.wake_ups.append(like)
        if self.down:
            raise AsrUnavailable("speech model unavailable: connection refused")
        await self._execution_ended.wait()

    def end_execution(self) -> None:
        self._execution_ended.set()
        self._execution_ended = asyncio.Event()


class Client:
    """Requests out through one `BatcherWakeUps`, each answered when the test says."""

    def __init__(self, wake_ups: BatcherWakeUps[str]) -> None:
        self.wake_ups = wake_ups
        self.answers: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def send(self, *names: str) -> None:
        for name in names:
            self.answers[name] = asyncio.Event()
            self.tasks.append(asyncio.create_task(self._request(name)))
        await asyncio.sleep(0)

    async def _request(self, name: str) -> None:
        with self.wake_ups.awaiting(name):
            await self.answers[name].wait()

    def answer(self, *names: str) -> None:
        for name in names:
            self.answers[name].set()

    async def done(self) -> None:
        await asyncio.gather(*self.tasks)


def pair(
    *, down: bool = False, delay_s: float = DELAY_S, max_wait_s: float = DELAY_S * 3
) -> tuple[Server, BatcherWakeUps[str], Client]:
    server = Server(down=down)
    wake_ups = BatcherWakeUps(server.wake_up, delay_s=delay_s, max_wait_s=max_wait_s)
    return server, wake_ups, Client(wake_ups)


async def later() -> None:
    """Long past the wake-up's delay."""
    await asyncio.sleep(DELAY_S * 5)


async def test_answers_while_earlier_requests_are_out_bring_a_wake_up_like_the_oldest() -> None:
    server, wake_ups, client = pair()
    await client.send("window 1", "window 2", "step", "window 3")
    client.answer("window 1", "window 2")  # one execution's answers: one wake-up for both
    await later()
    assert (server.wake_ups, wake_ups.sent) == (["step"], 1)
    client.answer("step")
    server.end_execution()  # the wake-up's own answer, with window 3 still out: another
    await later()
    assert server.wake_ups == ["step", "window 3"]
    client.answer("window 3")
    await client.done()
    server.end_execution()
    await later()
    assert len(server.wake_ups) == 2  # nothing out any more: no more wake-ups
    await wake_ups.close()


async def test_requests_sent_after_the_answer_need_no_wake_up() -> None:
    """Windows sent as earlier ones are answered (a file's next ones) reach the batcher after
    that execution ended: their own arrival wakes it, and a wake-up of another kind among
    them could only cut their batch short."""
    server, wake_ups, client = pair()
    await client.send("window 1", "window 2")
    client.answer("window 1", "window 2")
    await asyncio.sleep(0)
    await client.send("window 3", "window 4")
    await later()
    assert server.wake_ups == []
    client.answer("window 3", "window 4")
    await client.done()
    await wake_ups.close()


async def test_no_wake_up_when_the_rest_is_answered_within_the_delay() -> None:
    server, wake_ups, client = pair()
    await client.send("window 1", "window 2")
    client.answer("window 1")
    await asyncio.sleep(0)
    client.answer("window 2")
    await client.done()
    await later()
    assert server.wake_ups == []
    await wake_ups.close()


async def test_answers_read_one_by_one_share_one_check() -> None:
    """One execution's answers read over longer than the delay (a busy event loop): the check
    waits until they pause, so an answer read late does not count as a request still out."""
    server, wake_ups, client = pair(delay_s=0.1, max_wait_s=1.0)
    await client.send("window 1", "window 2", "window 3", "window 4")
    for window in ("window 1", "window 2", "window 3", "window 4"):
        client.answer(window)
        await asyncio.sleep(0.04)
    await client.done()
    await asyncio.sleep(0.3)
    assert server.wake_ups == []
    await wake_ups.close()


async def test_answers_that_keep_coming_delay_the_check_only_so_long() -> None:
    """Answers that never pause (executions back to back): the check comes at most
    `max_wait_s` after the first of them, for the request still out from before it."""
    server, wake_ups, client = pair(delay_s=0.1, max_wait_s=0.3)
    names = [f"window {n}" for n in range(1, 16)]
    await client.send("step", *names)
    for count, window in enumerate(names[:-1], start=1):
        client.answer(window)
        await asyncio.sleep(0.03)  # an answer every 30 ms, 14 of them
        if count == 7:
            assert server.wake_ups == []  # 0.21 s after the first: still coming
    assert server.wake_ups == ["step"]  # checked 0.3 s after the first
    client.answer("step", names[-1])
    server.end_execution()
    await client.done()
    await wake_ups.close()


async def test_a_failed_wake_up_is_not_repeated() -> None:
    """A server that is down fails a wake-up at once: none follows until an answer comes."""
    server, wake_ups, client = pair(down=True)
    await client.send("window 1", "window 2")
    client.answer("window 1")
    await later()
    assert server.wake_ups == ["window 2"]
    client.answer("window 2")
    await client.done()
    await wake_ups.close()


async def test_after_close_nothing_is_sent() -> None:
    server, wake_ups, client = pair()
    await client.send("window 1", "window 2", "window 3")
    client.answer("window 1")
    await later()
    assert server.wake_ups == ["window 2"]  # under way, never answered
    await asyncio.wait_for(wake_ups.close(), timeout=1.0)
    client.answer("window 2")  # an answer with window 3, sent before it, still out
    await later()
    assert server.wake_ups == ["window 2"]
    client.answer("window 3")
    await client.done()
