"""How many uploads the gateway works on at once, and how many may wait for a turn.

An upload holds up to `file_windows_in_flight` windows at Triton while it runs, so bounding
the uploads that run bounds the file work queued ahead of live streams' steps. Past the
waiting room the next upload is refused at once, before its body is read, with 503 and
`Retry-After`: a queue without a bound only turns overload into timeouts. An upload takes its
turn to run only once its body is in (`take_turn`), so clients that send slowly cannot hold
the running slots while others wait.

A client whose uploads keep being refused (4xx: bodies over a cap, forms over their bounds,
audio too long, bodies too slow) is refused at once, before its body is read, once it has
had `refusals` of them in `window_s` seconds (`RefusalRecord`): 429 with `Retry-After`, sent
after `BACKOFF_ANSWER_DELAY_S`. Each refusal costs the gateway CPU (parsing a form up to its
bound, decoding a file up to the length limit), and a client answered at once simply asks
again: on 2 shared cores four connections looping on refused forms kept a core busy and
held honest live finals back by 20 s. Held for a second first, such a loop asks once a second.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.server.access import client_of
from gateway.server.errors import RETRY_AFTER_S, ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Refused = Callable[[str], None]  # told why an upload was refused (gateway.server.metrics)
# How long a client in back-off waits for its 429: a loop of refused requests slows to one a
# second per connection, and each waiting answer is a sleeping task, not CPU.
BACKOFF_ANSWER_DELAY_S = 1.0
MAX_CLIENTS_RECORDED = 10_000  # beyond, recording a refusal first forgets the expired ones


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
    decoder writes, chunk by chunk, and gives it back when its request ends. One client's
    uploads together hold at most `per_client_bytes`: a client decoding two files that
    claim hours, say, cannot take the room every other client's uploads decode in (see
    `client_share_bytes`). Claims grow in the threads that read decoders' output, and are
    given back on the event loop: the counts change under a lock.
    """

    def __init__(self, limit_bytes: int, per_client_bytes: int, refused: Refused = _ignore) -> None:
        self.limit_bytes = limit_bytes
        self.per_client_bytes = per_client_bytes
        self.held_by_client: collections.Counter[str] = collections.Counter()
        self.refused = refused
        self.lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        """What all uploads hold now (a sum over the clients holding any: a few at most)."""
        return sum(self.held_by_client.values())

    def claim(self, client: str) -> AudioClaim:
        return AudioClaim(self, client)


def client_share_bytes(limit_bytes: int, longest_upload_bytes: int) -> int:
    """What one client's uploads may hold of the budget: half of it, or what one upload of
    the longest audio allowed decodes to where that is more (any one upload must fit). With
    the defaults (768 MB; 3 h, 659 MB) that leaves the others 109 MB, half an hour of audio,
    while one client holds its most; with a limit of minutes, a client still decodes many
    uploads at once."""
    return max(limit_bytes // 2, longest_upload_bytes)


class AudioClaim:
    def __init__(self, budget: AudioBudget, client: str) -> None:
        self._budget = budget
        self._client = client
        self.bytes = 0

    def grow(self, size: int) -> None:
        """Claim `size` more bytes; 503 when the budget, or this client's share of it, has no
        room for them."""
        budget = self._budget
        with budget.lock:
            if (held := budget.held_bytes) + size > budget.limit_bytes:
                self._refuse(
                    "decoded_audio_budget",
                    f"uploads hold {held / 2**20:.0f} MB of decoded audio of the "
                    f"{budget.limit_bytes / 2**20:.0f} MB it holds at once; retry later",
                )
            held_by_client = budget.held_by_client[self._client]
            if held_by_client + size > budget.per_client_bytes:
                self._refuse(
                    "client_decoded_audio",
                    f"this client's uploads hold {held_by_client / 2**20:.0f} MB of decoded "
                    f"audio, the most one client holds at once is "
                    f"{budget.per_client_bytes / 2**20:.0f} MB; retry when one is done",
                )
            budget.held_by_client[self._client] += size
            self.bytes += size

    def _refuse(self, reason: str, detail: str) -> None:
        self._budget.refused(reason)
        raise ApiError(
            503, f"the server is busy: {detail}", "server_busy", retry_after=RETRY_AFTER_S
        )

    def give_back(self) -> None:
        budget = self._budget
        with budget.lock:
            budget.held_by_client[self._client] -= self.bytes
            if budget.held_by_client[self._client] <= 0:
                del budget.held_by_client[self._client]
            self.bytes = 0


AUDIO_CLAIM = web.RequestKey("audio_claim", AudioClaim)


class RefusalRecord:
    """When each client's uploads were refused (4xx), over the last `window_s` seconds."""

    def __init__(self, refusals: int, window_s: float, clock: Callable[[], float]) -> None:
        self.refusals = refusals
        self.window_s = window_s
        self._clock = clock
        self._by_client: dict[str, collections.deque[float]] = {}

    def record(self, client: str) -> None:
        if len(self._by_client) >= MAX_CLIENTS_RECORDED:  # many addresses: drop the expired
            for other in list(self._by_client):
                self._forget_old(other)
        self._by_client.setdefault(client, collections.deque()).append(self._clock())

    @property
    def clients(self) -> int:
        """Clients with a refusal in the window (or not yet looked at since it left)."""
        return len(self._by_client)

    def backoff_s(self, client: str) -> float:
        """How long `client` must wait before an upload is taken again (0: it may now)."""
        times = self._forget_old(client)
        if len(times) < self.refusals:
            return 0.0
        return times[-self.refusals] + self.window_s - self._clock()

    def _forget_old(self, client: str) -> collections.deque[float]:
        times = self._by_client.get(client, collections.deque())
        while times and times[0] <= self._clock() - self.window_s:
            times.popleft()
        if not times:
            self._by_client.pop(client, None)
        return times


class UploadAdmission:
    """`refused` is told why an upload was refused (`waiting_room_full`, `client_limit`,
    `refused_uploads`), and `waited` how long each one waited for its turn."""

    def __init__(
        self,
        running: int,
        waiting: int,
        per_client: int,
        audio: AudioBudget,
        refusals: RefusalRecord,
        *,
        refused: Refused = _ignore,
        waited: Callable[[float], None] = _ignore,
    ) -> None:
        self.audio = audio
        self.refusals = refusals
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
            client = client_of(request)
            if (wait_s := self.refusals.backoff_s(client)) > 0:
                self._refused("refused_uploads")
                await asyncio.sleep(BACKOFF_ANSWER_DELAY_S)
                raise ApiError(
                    429,
                    f"{self.refusals.refusals} uploads from this client were refused in the last "
                    f"{self.refusals.window_s:g} s; fix the requests and retry in "
                    f"{math.ceil(wait_s)} s",
                    "too_many_refused_uploads",
                    retry_after=math.ceil(wait_s),
                )
            if self._admitted >= self._capacity:
                self._refused("waiting_room_full")
                uploads = "1 upload is" if self._admitted == 1 else f"{self._admitted} uploads are"
                raise ApiError(
                    503,
                    f"the server is busy: {uploads} being transcribed or waiting; retry later",
                    "server_busy",
                    retry_after=RETRY_AFTER_S,
                )
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
            request[AUDIO_CLAIM] = claim = self.audio.claim(client)
            try:
                return await handler(request)
            except ApiError as exc:
                if 400 <= exc.status < 500:
                    self.refusals.record(client)
                raise
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
