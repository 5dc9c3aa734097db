"""The gateway's periodic heap trim (gateway/heap.py)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway import heap
from gateway.keys import SETTINGS
from gateway.settings import Settings


def test_glibc_offers_malloc_trim() -> None:
    trim = heap.malloc_trim()
    assert trim is not None and trim(0) in (0, 1)


async def run_for(seconds: float, settings: Settings, monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(heap, "malloc_trim", lambda: lambda pad: calls.append(pad) or 1)
    app = web.Application()
    app[SETTINGS] = settings
    context = heap.heap_trimming(app)
    await anext(context)
    await asyncio.sleep(seconds)
    await anext(context, None)  # the cleanup half: stops the task
    stopped_at = len(calls)
    await asyncio.sleep(3 * settings.heap_trim_interval_s + 0.05)
    assert len(calls) == stopped_at  # nothing trims after cleanup
    return calls


async def test_trims_every_interval_until_cleanup(monkeypatch) -> None:
    calls = await run_for(0.35, Settings(heap_trim_interval_s=0.1), monkeypatch)
    assert 2 <= len(calls) <= 4 and set(calls) == {0}


async def test_an_interval_of_zero_never_trims(monkeypatch) -> None:
    assert await run_for(0.2, Settings(heap_trim_interval_s=0), monkeypatch) == []
