"""Give the memory that finished requests freed back to the operating system.

An upload's decoded audio is one large block (4 bytes a sample: 230 MB an hour), grown as
ffmpeg writes it, in the thread that reads ffmpeg's output. By default glibc maps such a block
on its own, but once one is freed it raises its mmap threshold to that size and serves the next
ones from the heap, where what they free stays with the process. `malloc_trim(0)` returns the
main heap's free memory, but of the other threads' heaps it leaves the top, which is where a
freed block at the end lies: three decodings at once left the gateway 60-90 MiB larger after
every trim, and the soak's gateway 58-68 MiB larger at rest after its mixed phase than before
it. So blocks of `LARGE_BLOCK_BYTES` or more are always mapped on their own
(`map_large_blocks`): freed, they go back at once, whichever thread freed them, and a growing
buffer grows by remapping, without a copy. Smaller ones stay in the heap, which
`malloc_trim(0)` trims every few seconds in a worker thread, so the event loop does not wait for
it. (The model's process does the opposite, for speed: `model_repository/whisper/1/heap.py`.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from gateway.server.background import running
from gateway.server.keys import SETTINGS

M_MMAP_THRESHOLD = -3  # mallopt's parameter (glibc's malloc.h)
LARGE_BLOCK_BYTES = 1 << 20  # a second of decoded audio is 64 kB; a window's 1.9 MB


def _libc_function(name: str) -> Any:
    """A function of glibc, or None where the C library has none (e.g. musl)."""
    library = ctypes.util.find_library("c")
    return None if library is None else getattr(ctypes.CDLL(library), name, None)


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None."""
    trim: Callable[[int], int] | None = _libc_function("malloc_trim")
    return trim


def map_large_blocks() -> bool:
    """Map every block of `LARGE_BLOCK_BYTES` or more on its own, for good (a threshold set
    once is no longer raised by glibc); False where that cannot be set."""
    mallopt = _libc_function("mallopt")
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))


async def trim_every(interval_s: float, trim: Callable[[int], int]) -> None:
    """Call `trim(0)` in a worker thread every `interval_s`, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(trim, 0)


async def heap_trimming(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: large blocks mapped on their own, and a trim every `heap_trim_interval_s`
    (0: never) while the app runs."""
    map_large_blocks()
    interval_s = app[SETTINGS].heap_trim_interval_s
    trim = malloc_trim()
    if interval_s <= 0 or trim is None:
        yield
        return
    async with running(trim_every(interval_s, trim), "heap-trim"):
        yield
