"""The file-work gate (gateway.modes.file_work): how many file windows reach the model at once."""

from __future__ import annotations

import asyncio

import numpy as np

from gateway.core.contract import Priority, TranscribeOptions
from gateway.modes.file_work import FileWorkGate, WindowSlots
from testsupport.scripted_backend import ScriptedBackend


async def test_window_slots_follow_a_limit_that_changes() -> None:
    """Three windows run under a limit of 3; the limit drops to 1 (a live stream opened): a
    waiting window starts only once a single one is left running, not when the first ends."""
    limit = 3
    slots = WindowSlots(lambda: limit)
    done = [asyncio.Event() for _ in range(4)]
    started: list[int] = []

    async def window(number: int) -> None:
        async with slots:
            started.append(number)
            await done[number].wait()

    tasks = [asyncio.create_task(window(n)) for n in range(4)]
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2]
    limit = 1
    done[0].set()
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2]  # two still run: over the new limit
    done[1].set()
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2]  # one runs: at the limit
    done[2].set()
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2, 3]
    done[3].set()
    await asyncio.gather(*tasks)


async def test_the_gate_holds_file_windows_and_lets_live_steps_through() -> None:
    backend = ScriptedBackend(["words"])
    gate = FileWorkGate(backend, WindowSlots(lambda: 1))
    audio = np.zeros(16_000, np.float32)
    backend.hold()
    files = [
        asyncio.create_task(gate.transcribe(audio, TranscribeOptions(), priority=Priority.FILE))
        for _ in range(3)
    ]
    step = asyncio.create_task(
        gate.transcribe(audio, TranscribeOptions(), priority=Priority.STREAM)
    )
    await backend.until_waiting(2)
    await asyncio.sleep(0.01)
    assert [call.priority for call in backend.calls] == [Priority.FILE, Priority.STREAM]
    backend.release()
    await asyncio.gather(*files, step)
    assert len(backend.calls) == 4
