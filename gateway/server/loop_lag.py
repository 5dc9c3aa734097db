"""How late the gateway's event loop runs what is due: `hermes_event_loop_lag_seconds`.

One asyncio process serves every upload and stream, and all of it runs on its event loop,
one callback after another: when the process has more to do than its core, every live
stream's frames, its steps and every answer wait. That is where one gateway process stops
scaling (on an H200 host, where the model is fast, at about 100 streams, before the
detector scored streams in groups side by side and then off the loop: benchmarks/README.md,
"The gateway's event loop" and "The detector's rounds off the event loop"). Its CPU use says
so only indirectly (the detector's threads and ffmpeg count too, and a loop is full at one
core whatever the process may use); the lag is the wait itself. A timer due every
`LAG_INTERVAL_S` notes how late it ran: an idle or healthy loop runs it within a millisecond
or two, a loop at its core tens to hundreds of milliseconds late, which is the sign to run
more gateway processes (docs/deployment.md, "Capacity").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway.server.background import running
from gateway.server.metrics import LAG_INTERVAL_S, METRICS


async def note_lag(
    observe: Callable[[float], None],
    interval_s: float = LAG_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Sleep `interval_s` over and over, telling `observe` each time how late the loop woke
    this task (seconds), until cancelled."""
    while True:
        due = clock() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(clock() - due, 0.0))


async def loop_lag_watching(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the loop's lag into the app's metrics while the app runs."""
    async with running(note_lag(app[METRICS].loop_lag.observe), "loop-lag"):
        yield
