"""How many uploads the gateway works on at once, and how many may wait for a turn.

An upload holds up to `file_windows_in_flight` windows at Triton while it runs, so bounding
the uploads that run bounds the file work queued ahead of live streams' steps. Past the
waiting room the next upload is refused at once, before its body is read, with 503 and
`Retry-After`: a queue without a bound only turns overload into timeouts. An upload takes its
turn to run only once its body is in (`take_turn`), so clients that send slowly cannot hold
the running slots while others wait.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.server.access import client_of
from gateway.server.errors import RETRY_AFTER_S, ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Refused = Callable[[str], None]  # told why an upload was refused (gateway.server.metrics)


def _ignore(_: object) -> None:
    pass


class _Turn:
    """One admitted upload's claim on a running slot: taken once, given back by the guard."""

    def __init__(self, turns: asyncio.Semaphore, waited: Callable[[float], None]) -> None:
        self._turns = turns
        self._waited = waited
        self._held = False

    async def take(self) -> None:
        if not self._held:
            started = time.monotonic()
            await self._turns.acquire()
            self._held = True
            self._waited(time.monotonic() - started)

    def give_back(self) -> None:
        if self._held:
            self._turns.release()
            self._held = False


TURN = web.RequestKey("upload_turn", _Turn)


class AudioBudget:
    """The decoded audio all uploads hold at once, in bytes: each upload claims what its
    decoder writes, chunk by chunk, and gives it back when its request ends."""

    def __init__(self, limit_bytes: int, refused: Refused = _ignore) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self.refused = refused

    def claim(self) -> AudioClaim:
        return AudioClaim(self)


class AudioClaim:
    def __init__(self, budget: AudioBudget) -> None:
        self._budget = budget
        self.bytes = 0

    def grow(self, size: int) -> None:
        """Claim `size` more bytes; 503 when the budget has no room for them."""
        budget = self._budget
        if budget.held_bytes + size > budget.limit_bytes:
            budget.refused("decoded_audio_budget")
            raise ApiError(
                503,
                f"the server is busy: uploads hold {budget.held_bytes / 2**20:.0f} MB of decoded "
                f"audio of the {budget.limit_bytes / 2**20:.0f} MB it holds at once; retry later",
                "server_busy",
                retry_after=RETRY_AFTER_S,
            )
        budget.held_bytes += size
        self.bytes += size

    def give_back(self) -> None:
        self._budget.held_bytes -= self.bytes
        self.bytes = 0


AUDIO_CLAIM = web.RequestKey("audio_claim", AudioClaim)


class UploadAdmission:
    """`refused` is told why an upload was refused (`waiting_room_full`, `client_limit`), and
    `waited` how long each one waited for its turn."""

    def __init__(
        self,
        running: int,
        waiting: int,
        per_client: int,
        audio: AudioBudget,
        *,
        refused: Refused = _ignore,
        waited: Callable[[float], None] = _ignore,
    ) -> None:
        self.audio = audio
        self._refused = refused
        self._waited = waited
        self._per_client = per_client
        self._by_client: collections.Counter[str] = collections.Counter()
        self._turns = asyncio.Semaphore(running)
        self._capacity = running + waiting
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Uploads running or waiting now."""
        return self._admitted

    def guard(self, handler: Handler) -> Handler:
        """`handler` run only when admitted; it calls `take_turn` before the work starts."""

        @functools.wraps(handler)
        async def admitted(request: web.Request) -> web.StreamResponse:
            if self._admitted >= self._capacity:
                self._refused("waiting_room_full")
                uploads = "1 upload is" if self._admitted == 1 else f"{self._admitted} uploads are"
                raise ApiError(
                    503,
                    f"the server is busy: {uploads} being transcribed or waiting; retry later",
                    "server_busy",
                    retry_after=RETRY_AFTER_S,
                )
            client = client_of(request)
            if self._by_client[client] >= self._per_client:
                self._refused("client_limit")
                raise ApiError(
                    503,
                    f"too many uploads from this client: the limit is {self._per_client} "
                    "running or waiting; retry later",
                    "server_busy",
                    retry_after=RETRY_AFTER_S,
                )
            self._admitted += 1
            self._by_client[client] += 1
            request[TURN] = turn = _Turn(self._turns, self._waited)
            request[AUDIO_CLAIM] = claim = self.audio.claim()
            try:
                return await handler(request)
            finally:
                turn.give_back()
                claim.give_back()
                self._admitted -= 1
                self._by_client[client] -= 1
                if not self._by_client[client]:
                    del self._by_client[client]

        return admitted


def watch_decoded_audio(request: web.Request) -> Callable[[int], None] | None:
    """What the decoder reports its output to (a request not behind `guard` has no budget)."""
    claim = request.get(AUDIO_CLAIM)
    return None if claim is None else claim.grow


async def take_turn(request: web.Request) -> None:
    """Wait for one of the running slots (a request not behind `guard` runs at once)."""
    if (turn := request.get(TURN)) is not None:
        await turn.take()
