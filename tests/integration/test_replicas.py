"""One gateway, two real Triton servers: work is spread over both, and when one is killed
mid-load nothing accepted is lost; it is put back once it serves again."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest

from gateway.server.keys import ASR
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton, TritonPorts
from testsupport.clips import ARTIFACTS_DIR
from testsupport.http import form
from testsupport.net import free_port
from testsupport.streams import assert_protocol, pcm16, stream
from testsupport.triton import crash
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_triton(triton: LocalTriton) -> Iterator[LocalTriton]:
    server = LocalTriton(
        ports=TritonPorts(free_port(), free_port(), free_port()),
        log_path=ARTIFACTS_DIR / "triton-second.log",
    )
    with server:
        yield server


@pytest.fixture
async def pooled_gateway(make_gateway, gateway_settings: Settings, triton, second_triton):
    return await make_gateway(
        replace(
            gateway_settings,
            triton_url=f"{triton.grpc_url},{second_triton.grpc_url}",
            triton_probe_interval_s=0.5,
        )
    )


def inference_count(server: LocalTriton) -> int:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/whisper/stats", timeout=5) as reply:
        return int(json.load(reply)["model_stats"][0].get("inference_count", 0))


async def settled_counts(*servers: LocalTriton) -> tuple[int, ...]:
    """Each server's inference count once it stops moving: Triton records an execution's
    statistics after its responses are sent, so a read right after the replies can miss the
    last executions (CI read 2 of 4 uploads' inferences that way)."""
    counts = tuple(inference_count(server) for server in servers)
    for _ in range(40):
        await asyncio.sleep(0.25)
        latest = tuple(inference_count(server) for server in servers)
        if latest == counts:
            return latest
        counts = latest
    return counts


async def upload(gateway, path) -> str:
    reply = await gateway.post("/transcribe", data=form(path))
    assert reply.status == 200, await reply.text()
    return (await reply.json())["text"]


async def test_concurrent_uploads_reach_both_replicas(
    pooled_gateway, triton, second_triton, clips
) -> None:
    jfk = clips["jfk.flac"]
    before = await settled_counts(triton, second_triton)
    texts = await asyncio.gather(*(upload(pooled_gateway, jfk.path) for _ in range(4)))
    after = await settled_counts(triton, second_triton)
    assert all(word_error_rate(jfk.text, text) == 0.0 for text in texts), texts
    assert after[0] > before[0] and after[1] > before[1], (before, after)
    ready = await (await pooled_gateway.get("/readyz")).json()
    assert [(r["address"], r["healthy"]) for r in ready["replicas"]] == [
        (triton.grpc_url, True),
        (second_triton.grpc_url, True),
    ]


async def test_a_replica_killed_mid_load_loses_nothing_and_comes_back(
    pooled_gateway, triton, second_triton, clips
) -> None:
    jfk, harvard = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    pool = pooled_gateway.server.app[ASR]
    victim = next(r for r in pool.replicas if r.address == second_triton.grpc_url)
    readiness: list[int] = []

    async def kill_when_busy() -> None:
        while victim.outstanding == 0:
            await asyncio.sleep(0.05)
        crash(second_triton)
        for _ in range(10):
            readiness.append((await pooled_gateway.get("/readyz")).status)
            await asyncio.sleep(0.3)

    *texts, live, _ = await asyncio.gather(
        *(upload(pooled_gateway, harvard.path) for _ in range(3)),
        stream(pooled_gateway, pcm16(jfk.audio), bytes_per_second=32000, pace=2.0),
        kill_when_busy(),
    )
    assert all(word_error_rate(harvard.text, text) == 0.0 for text in texts), texts
    assert_protocol(live)
    assert word_error_rate(jfk.text, live.text) == 0.0, live.text
    assert not [m for m in live.messages if m["type"] == "error"]
    assert readiness == [200] * 10
    assert not victim.healthy and victim.failures > 0

    second_triton.stop()  # reap the killed process, then start a fresh one on the same ports
    second_triton.start()
    await asyncio.to_thread(second_triton.wait_ready)
    for _ in range(40):
        if victim.healthy:
            break
        await asyncio.sleep(0.25)
    assert victim.healthy
    (served_before,) = await settled_counts(second_triton)
    await asyncio.gather(*(upload(pooled_gateway, jfk.path) for _ in range(4)))
    (served_after,) = await settled_counts(second_triton)
    assert served_after > served_before
