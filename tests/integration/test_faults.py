"""Faults through the real stack: a tritonserver SIGKILLed mid-upload and mid-stream and
brought back by the supervisor, and a gateway stopped with SIGTERM while it works."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soxr

from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_messages import LONG_PAUSE_SECONDS
from gateway.server.keys import ASR
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton, TritonPorts
from gateway.tools.supervisor import TritonSupervisor
from testsupport.clips import ARTIFACTS_DIR
from testsupport.http import error_of, form
from testsupport.net import free_port
from testsupport.streams import FRAME_SECONDS, pcm16
from testsupport.triton import crash
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration

FRAME_BYTES = int(2 * SAMPLE_RATE * FRAME_SECONDS)


@pytest.fixture(scope="module")
def supervised_triton(triton: LocalTriton) -> Iterator[TritonSupervisor]:
    """A Triton of this module's own (the session's must not die), under a supervisor."""
    server = LocalTriton(
        ports=TritonPorts(free_port(), free_port(), free_port()),
        log_path=ARTIFACTS_DIR / "triton-faults.log",
    )
    with server:
        supervisor = TritonSupervisor(server, first_backoff_s=0.5)
        supervisor.start()
        yield supervisor
        supervisor.stop()


def ffmpeg_children() -> list[int]:
    """ffmpeg processes whose parent is this test process (the in-process gateway's)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(os.getpid()) and "ffmpeg" in fields.get(
            "Name", ""
        ):
            found.append(int(status.parent.name))
    return found


def open_files() -> int:
    """This process's descriptors other than sockets: files and pipes, where a leaked
    ffmpeg run or temporary upload would show."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sum(not target.startswith(("socket:", "anon_inode:")) for target in targets)


async def wait_for(condition, timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(interval)
    return False


async def test_triton_killed_mid_upload_and_mid_stream(
    make_gateway, gateway_settings: Settings, supervised_triton: TritonSupervisor, clips
) -> None:
    server = supervised_triton.triton
    gateway = await make_gateway(
        replace(gateway_settings, triton_url=server.grpc_url, triton_probe_interval_s=0.5)
    )
    replica = gateway.server.app[ASR].replicas[0]
    jfk, harvard = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    files_before, restarts_before = open_files(), supervised_triton.restarts
    messages: list[dict] = []
    sent_s = 0.0  # stream time of the audio sent so far

    async def ready() -> bool:
        return (await gateway.get("/readyz")).status == 200

    async with gateway.ws_connect("/stream-audio") as ws:

        async def read() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                messages.append(json.loads(message.data))

        async def send(audio: np.ndarray) -> None:
            nonlocal sent_s
            sent_s += audio.size / SAMPLE_RATE
            payload = pcm16(audio)
            for offset in range(0, len(payload), FRAME_BYTES):
                await ws.send_bytes(payload[offset : offset + FRAME_BYTES])
                await asyncio.sleep(FRAME_SECONDS / 2)

        reader = asyncio.create_task(read())
        upload = asyncio.create_task(gateway.post("/transcribe", data=form(harvard.path)))
        streaming = asyncio.create_task(send(jfk.audio))
        assert await wait_for(lambda: asyncio.sleep(0, replica.outstanding > 0), 60, 0.05)
        crash(server)

        reply = await upload
        assert "unavailable" in await error_of(reply, 503)
        assert reply.headers["Retry-After"] == "5"
        assert (await gateway.get("/readyz")).status == 503  # the model takes seconds to load
        await streaming
        # while the model is away the stream stays open: silence keeps it alive
        deadline = time.monotonic() + 240
        while not await ready():
            assert time.monotonic() < deadline, "Triton did not come back"
            await send(np.zeros(SAMPLE_RATE // 2, np.float32))
        # however soon Triton is back, a pause a final does not span before the second JFK:
        # two utterances, as the checks below read them (after 2.5 s of silence the stream
        # rightly committed both in one final)
        while sent_s < jfk.audio.size / SAMPLE_RATE + LONG_PAUSE_SECONDS + 1.0:
            await send(np.zeros(SAMPLE_RATE // 2, np.float32))
        second_jfk_at = sent_s
        await send(jfk.audio)  # after the restart, the stream is transcribed again
        await ws.send_json({"type": "stop"})
        await asyncio.wait_for(reader, 120)

    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1 and "unavailable" in errors[0]["message"], errors
    assert "resumes when it is back" in errors[0]["message"]
    assert messages[-1] == {"type": "done"}
    finals = "".join(m["text"] for m in messages if m["type"] == "final").split()
    reference = jfk.text.split()
    # the JFK sent after the restart is the end of the transcript, word for word or nearly
    assert word_error_rate(jfk.text, " ".join(finals[-len(reference) :])) <= 0.1, finals
    # the JFK sent as Triton died is transcribed once it is back, or said to be skipped
    during = "".join(
        m["text"] for m in messages if m["type"] == "final" and m["end"] <= second_jfk_at + 0.5
    )
    skipped = [
        m for m in messages if m["type"] == "skipped" and m["start"] < jfk.audio.size / SAMPLE_RATE
    ]
    assert word_error_rate(jfk.text, during) <= 0.1 or skipped, (during, skipped)
    assert supervised_triton.restarts == restarts_before + 1
    assert ffmpeg_children() == []
    assert open_files() <= files_before


async def test_a_realtime_session_outlives_a_triton_that_is_down(
    make_gateway, gateway_settings: Settings, clips
) -> None:
    """A Realtime session (client commits) while its Triton is down, then after it is up:
    the two turns spoken while it is away fail with `model_unavailable`, said once for
    both however many of their steps fail; the session stays open, and once Triton is up
    the next turn is transcribed."""
    server = LocalTriton(
        ports=TritonPorts(free_port(), free_port(), free_port()),
        log_path=ARTIFACTS_DIR / "triton-realtime-outage.log",
    )
    gateway = await make_gateway(
        replace(gateway_settings, triton_url=server.grpc_url, triton_probe_interval_s=0.5)
    )
    jfk = clips["jfk.flac"]
    events: list[dict] = []
    failed = "conversation.item.input_audio_transcription.failed"
    completed = "conversation.item.input_audio_transcription.completed"

    async def ready() -> bool:
        return (await gateway.get("/readyz")).status == 200

    async with gateway.ws_connect("/v1/realtime?intent=transcription") as ws:

        async def until(kind: str) -> None:
            while not events or events[-1]["type"] != kind:
                events.append(await ws.receive_json(timeout=120))

        async def turn(audio: np.ndarray, pace: float) -> None:
            at_24k = pcm16(soxr.resample(audio, SAMPLE_RATE, 24_000))
            step = int(2 * 24_000 * FRAME_SECONDS)
            for offset in range(0, len(at_24k), step):
                chunk = base64.b64encode(at_24k[offset : offset + step]).decode()
                await ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
                await asyncio.sleep(FRAME_SECONDS / pace)
            await ws.send_json({"type": "input_audio_buffer.commit"})

        await until("session.created")
        await ws.send_json(
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
            }
        )
        await until("session.updated")
        for _ in range(2):
            await turn(jfk.audio[: 5 * SAMPLE_RATE], pace=1.0)  # its steps try on the beat
            await until(failed)
        try:
            await asyncio.to_thread(server.start)
            deadline = time.monotonic() + 240
            while not await ready():
                assert time.monotonic() < deadline, "Triton did not come up"
                await asyncio.sleep(0.5)
            await turn(jfk.audio, pace=4.0)
            await until(completed)
        finally:
            await asyncio.to_thread(server.stop)

    errors = [e["error"] for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors if e["code"] != "audio_skipped"] == ["model_unavailable"]
    assert "resumes when it is back" in errors[0]["message"]
    assert [e["error"]["code"] for e in events if e["type"] == failed] == ["model_unavailable"] * 2
    assert word_error_rate(jfk.text, events[-1]["transcript"]) <= 0.1, events[-1]


@pytest.fixture
def gateway_process(triton: LocalTriton) -> Iterator[tuple[subprocess.Popen, str]]:
    """`hermes serve` as its own process, so it can be sent SIGTERM."""
    port = free_port()
    log = (ARTIFACTS_DIR / "gateway-sigterm.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.tools.cli",
            "serve",
            "--port",
            str(port),
            "--triton-url",
            triton.grpc_url,
            "--shutdown-timeout-s",
            "60",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


async def test_sigterm_finishes_uploads_and_flushes_streams(gateway_process, clips) -> None:
    process, url = gateway_process
    jfk, harvard = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:

        async def up() -> bool:
            try:
                async with client.get(f"{url}/readyz") as reply:
                    return reply.status == 200
            except aiohttp.ClientConnectionError:
                return False

        assert await wait_for(up, 60)
        upload = asyncio.create_task(client.post(f"{url}/transcribe", data=form(harvard.path)))
        messages: list[dict] = []
        async with client.ws_connect(f"{url}/stream-audio") as ws:
            payload = pcm16(jfk.audio[: 4 * SAMPLE_RATE])  # "And so my fellow Americans"
            for offset in range(0, len(payload), FRAME_BYTES):
                await ws.send_bytes(payload[offset : offset + FRAME_BYTES])
                await asyncio.sleep(FRAME_SECONDS / 2)
            process.send_signal(signal.SIGTERM)
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                messages.append(json.loads(message.data))
            close_code = ws.close_code
        assert not await up()  # no longer accepting
        reply = await upload
        assert reply.status == 200
        text = (await reply.json())["text"]
    assert word_error_rate(harvard.text, text) == 0.0, text
    assert close_code == 1001
    assert messages[-1] == {"type": "done"}
    finals = "".join(m["text"] for m in messages if m["type"] == "final")
    assert word_error_rate("And so my fellow Americans", finals) <= 0.2, finals
    assert await asyncio.to_thread(process.wait, 30) == 0
