"""The gateway's wake-ups for Triton's batcher through the real Triton and model: sent while
windows queue behind an execution, each answered by the model as a wake-up (nothing decoded,
counted in its metrics), and every window's text as without them."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.core.contract import Priority, TranscribeOptions
from gateway.server.app import ASR
from gateway.tools.local_triton import LocalTriton
from testsupport.triton import model_samples
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration

BATCH = 16  # the whisper config's max_batch_size


def model_wake_ups(triton: LocalTriton) -> float:
    """The model's `hermes_model_wake_up_requests_total` on Triton's metrics port."""
    (sample,) = model_samples(triton, "hermes_model_wake_up_requests_total")
    return sample.value


async def test_windows_queued_behind_a_full_batch_wake_the_batcher(
    gateway, triton: LocalTriton, clips
) -> None:
    """More windows at once than a batch holds, through the gateway's own client: those
    beyond the first execution queue during it, and a wake-up follows its answers."""
    jfk = clips["jfk.flac"]
    pool = gateway.server.app[ASR]
    before = model_wake_ups(triton)
    options = TranscribeOptions(language="en")
    results = await asyncio.gather(
        *(pool.transcribe(jfk.audio, options, priority=Priority.FILE) for _ in range(BATCH + 4))
    )
    assert all(word_error_rate(jfk.text, result.text) == 0.0 for result in results)
    (replica,) = (await (await gateway.get("/readyz")).json())["replicas"]
    assert replica["wake_ups"] >= 1
    deadline = time.monotonic() + 10  # the last one may still be on its way back
    while model_wake_ups(triton) - before < replica["wake_ups"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert model_wake_ups(triton) - before == replica["wake_ups"]
