"""How many uploads the gateway works on at once, and how many may wait for a turn.

An upload holds up to `file_windows_in_flight` windows at Triton while it runs, so bounding
the uploads that run bounds the file work queued ahead of live streams' steps. Past the
waiting room the next upload is refused at once, before its body is read, with 503 and
`Retry-After`: a queue without a bound only turns overload into timeouts.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.server.errors import ApiError
from gateway.server.http_files import RETRY_AFTER_S

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UploadAdmission:
    def __init__(self, running: int, waiting: int) -> None:
        self._turns = asyncio.Semaphore(running)
        self._capacity = running + waiting
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Uploads running or waiting now."""
        return self._admitted

    def guard(self, handler: Handler) -> Handler:
        """`handler` run only when admitted, and in its turn."""

        @functools.wraps(handler)
        async def admitted(request: web.Request) -> web.StreamResponse:
            if self._admitted >= self._capacity:
                uploads = "1 upload is" if self._admitted == 1 else f"{self._admitted} uploads are"
                raise ApiError(
                    503,
                    f"the server is busy: {uploads} being transcribed or waiting; retry later",
                    "server_busy",
                    retry_after=RETRY_AFTER_S,
                )
            self._admitted += 1
            try:
                async with self._turns:
                    return await handler(request)
            finally:
                self._admitted -= 1

        return admitted
