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


def pair(*, down: bool = False) -> tuple[Server, BatcherWakeUps[str], Client]:
    server = Server(down=down)
    wake_ups = BatcherWakeUps(server.wake_up, delay_s=DELAY_S)
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
