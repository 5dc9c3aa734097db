"""The event loop's lag (gateway/server/loop_lag.py) and the app task helper it runs in
(gateway/server/background.py)."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from aiohttp import web

from gateway.server import loop_lag
from gateway.server.background import running
from gateway.server.metrics import LAG_INTERVAL_S, METRICS, GatewayMetrics


async def test_a_loop_held_up_is_seen_as_late_as_it_was_held() -> None:
    lags: list[float] = []
    task = asyncio.create_task(loop_lag.note_lag(lags.append, interval_s=0.02))
    await asyncio.sleep(0.2)
    idle = list(lags)
    time.sleep(0.3)  # a callback that keeps the loop for 0.3 s
    await asyncio.sleep(0.1)
    task.cancel()
    held = lags[len(idle) :]
    assert len(idle) >= 5 and statistics.median(idle) < 0.01
    assert 0.25 <= max(held) < 0.5


async def test_the_app_notes_its_loop_lag_into_its_metrics_while_it_runs() -> None:
    app = web.Application()
    app[METRICS] = metrics = GatewayMetrics()
    context = loop_lag.loop_lag_watching(app)
    await anext(context)
    assert [t.get_name() for t in asyncio.all_tasks()].count("loop-lag") == 1
    await asyncio.sleep(LAG_INTERVAL_S * 2.5)
    await anext(context, None)
    assert "loop-lag" not in [t.get_name() for t in asyncio.all_tasks()]
    counted = metrics.registry.get_sample_value("hermes_event_loop_lag_seconds_count")
    assert counted is not None and counted >= 1


async def test_a_running_task_is_cancelled_when_its_block_fails() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    with pytest.raises(RuntimeError, match="the block failed"):
        async with running(forever(), "forever"):
            await started.wait()
            raise RuntimeError("the block failed")
    assert "forever" not in [t.get_name() for t in asyncio.all_tasks()]
