"""Give the memory that finished requests freed back to the operating system, every few seconds.

An upload's decoded audio is one large block (4 bytes a sample: 230 MB an hour), and so is
ffmpeg's output. Once such a block is freed, glibc raises its mmap threshold and serves the
next ones from the heap, where what they free stays with the process: the soak saw the gateway
grow by 61 MiB over three minutes of mixed load. `malloc_trim(0)` returns it; run in a worker
thread, so the event loop does not wait for it. (The model has its own trimmer:
`model_repository/whisper/1/heap.py`.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway.server.background import running
from gateway.server.keys import SETTINGS


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (e.g. musl)."""
    name = ctypes.util.find_library("c")
    return None if name is None else getattr(ctypes.CDLL(name), "malloc_trim", None)


async def trim_every(interval_s: float, trim: Callable[[int], int]) -> None:
    """Call `trim(0)` in a worker thread every `interval_s`, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(trim, 0)


async def heap_trimming(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: trim every `heap_trim_interval_s` (0: never) while the app runs."""
    interval_s = app[SETTINGS].heap_trim_interval_s
    trim = malloc_trim()
    if interval_s <= 0 or trim is None:
        yield
        return
    async with running(trim_every(interval_s, trim), "heap-trim"):
        yield
