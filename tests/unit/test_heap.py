"""The gateway's periodic heap trim (gateway/server/heap.py)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from gateway.server import heap
from gateway.server.keys import SETTINGS
from gateway.server.settings import Settings


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
