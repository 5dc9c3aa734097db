"""Live streams over `/stream-audio` as a client sends them: frames at a pace, replies read
meanwhile, and the protocol's shape checked."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np

FRAME_SECONDS = 0.1


@dataclass
class StreamRun:
    messages: list[dict] = field(default_factory=list)
    first_final_at: float | None = None  # seconds after the first frame was sent
    last_frame_at: float = 0.0
    close_code: int | None = None

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def text(self) -> str:
        return "".join(m["text"] for m in self.of_type("final"))


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def stream(
    gateway,
    payload: bytes,
    *,
    bytes_per_second: int,
    pace: float = 4.0,
    config: dict | None = None,
    before_audio: list[str | bytes] = (),
    stop: bool = True,
    linger: float = 0.0,
) -> StreamRun:
    """Send `payload` in 100 ms frames at `pace` × real time, reading replies meanwhile;
    wait `linger` seconds before `stop`."""
    run = StreamRun()
    frame = int(bytes_per_second * FRAME_SECONDS)
    async with gateway.ws_connect("/stream-audio") as ws:

        async def read() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                run.messages.append(json.loads(message.data))
                if run.messages[-1]["type"] == "final" and run.first_final_at is None:
                    run.first_final_at = time.monotonic() - started

        started = time.monotonic()
        reader = asyncio.create_task(read())
        if config is not None:
            await ws.send_json({"type": "config", **config})
        for item in before_audio:
            await (ws.send_bytes(item) if isinstance(item, bytes) else ws.send_str(item))
        for index, offset in enumerate(range(0, len(payload), frame)):
            await ws.send_bytes(payload[offset : offset + frame])
            await asyncio.sleep(
                max(0.0, started + (index + 1) * FRAME_SECONDS / pace - time.monotonic())
            )
        run.last_frame_at = time.monotonic() - started
        await asyncio.sleep(linger)
        if stop:
            await ws.send_json({"type": "stop"})
        await asyncio.wait_for(reader, timeout=120)
        run.close_code = ws.close_code
    return run


def assert_protocol(run: StreamRun) -> None:
    """partial, final and skipped messages, then done; finals in time order, never
    overlapping."""
    kinds = [m["type"] for m in run.messages]
    assert kinds[-1] == "done" and kinds.count("done") == 1, kinds
    assert set(kinds[:-1]) <= {"partial", "final", "skipped"}, kinds
    finals = run.of_type("final")
    assert finals
    for before, after in zip(finals, finals[1:], strict=False):
        assert after["start"] >= before["end"] - 0.05
    assert all(0 <= m["start"] <= m["end"] for m in finals)
    assert run.close_code == 1000
