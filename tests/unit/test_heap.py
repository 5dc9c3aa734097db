"""The gateway's heap (gateway/server/heap.py): large blocks mapped on their own, and a periodic
trim."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable

from aiohttp import web

from gateway.server import heap
from gateway.server.keys import SETTINGS
from gateway.server.settings import Settings

# Three threads of a pool grow a block of 26 MB each at once, as the readers of ffmpeg's output
# grow three uploads' decoded audio, and free it, three times (the first time glibc maps such
# blocks on its own, then raises its threshold); then the process trims and prints how much it
# grew
THREE_DECODINGS = """
import sys
from concurrent.futures import ThreadPoolExecutor
from gateway.server import heap
if sys.argv[1] == "mapped":
    assert heap.map_large_blocks()
def resident():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
def decode(_):
    output = bytearray()
    for _ in range(26):
        output += bytes(1 << 20)
    return len(output)
before = resident()
with ThreadPoolExecutor(3) as readers:
    for _ in range(3):
        list(readers.map(decode, range(3)))
    heap.malloc_trim()(0)
    print(resident() - before)
"""


def grown_mib(mode: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", THREE_DECODINGS, mode], capture_output=True, text=True, check=True
    )
    return int(run.stdout)


def test_large_blocks_freed_by_any_thread_go_back_to_the_system() -> None:
    assert grown_mib("mapped") < 10
    assert grown_mib("default") > 45  # what the soak's gateway kept at rest without it


def test_glibc_offers_malloc_trim() -> None:
    trim = heap.malloc_trim()
    assert trim is not None and trim(0) in (0, 1)


async def test_trims_every_interval_until_cancelled() -> None:
    calls: list[int] = []
    task = asyncio.create_task(heap.trim_every(0.1, lambda pad: calls.append(pad) or 1))
    await asyncio.sleep(0.35)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stopped_at = len(calls)
    await asyncio.sleep(0.3)
    assert 2 <= stopped_at <= 4 and set(calls) == {0}
    assert len(calls) == stopped_at  # nothing trims once cancelled


def app_with(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    return app


def trimming_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "heap-trim"]


async def test_the_app_maps_large_blocks_on_its_own(monkeypatch) -> None:
    calls: list[tuple[object, ...]] = []

    def libc_function(name: str) -> Callable[..., int]:
        def call(*args: object) -> int:
            calls.append((name, *args))
            return 1

        return call

    monkeypatch.setattr(heap, "_libc_function", libc_function)
    context = heap.heap_trimming(app_with(Settings(heap_trim_interval_s=0)))
    await anext(context)
    assert calls == [("mallopt", heap.M_MMAP_THRESHOLD, heap.LARGE_BLOCK_BYTES)]
    await anext(context, None)


async def test_the_app_runs_the_trim_task_and_stops_it_on_cleanup() -> None:
    context = heap.heap_trimming(app_with(Settings(heap_trim_interval_s=0.05)))
    await anext(context)
    assert len(trimming_tasks()) == 1
    await anext(context, None)
    assert trimming_tasks() == []


async def test_an_interval_of_zero_starts_no_task() -> None:
    context = heap.heap_trimming(app_with(Settings(heap_trim_interval_s=0)))
    await anext(context)
    assert trimming_tasks() == []
    await anext(context, None)
