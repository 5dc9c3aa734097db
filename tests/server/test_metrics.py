"""`GET /metrics`: what the gateway counts, read back as Prometheus reads it (the client
library's own parser), after uploads, refusals and live streams against a scripted backend;
and that it asks for a key like the API when keys are on."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.server.metrics import LAG_INTERVAL_S
from tests.server import test_realtime_protocol as realtime
from tests.server.test_http_routes import JFK, KEY, api_error, upload, wav
from tests.server.test_stream_protocol import closing, receive, seconds, until
from testsupport.scripted_backend import ScriptedBackend
from testsupport.streams import pcm16

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient, **headers: str) -> Samples:
    reply = await client.get("/metrics", headers=headers)
    assert reply.status == 200, await reply.text()
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await reply.text())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample of that name and exactly those labels (KeyError when there is none)."""
    return samples[(name, frozenset(labels.items()))]


def requests(samples: Samples, route: str, status: str, method: str = "POST") -> float:
    labels = {"route": route, "method": method, "status": status}
    return samples.get(("hermes_http_requests_total", frozenset(labels.items())), 0.0)


async def test_requests_are_counted_by_route_pattern_and_status(client) -> None:
    assert (await client.post("/v1/audio/transcriptions", data=upload())).status == 200
    bad = upload(response_format="doc")
    await api_error(await client.post("/v1/audio/transcriptions", data=bad), 400, "invalid_value")
    await api_error(await client.post("/transcribe", data=upload(None)), 400, "missing_file")
    assert (await client.get("/static/app.js")).status == 200
    await api_error(await client.get("/static/nothing.js"), 404, "not_found")
    await api_error(await client.get("/no/such/path"), 404, "not_found")
    await api_error(await client.get("/transcribe"), 405, "method_not_allowed")
    samples = await scrape(client)
    assert requests(samples, "/v1/audio/transcriptions", "200") == 1
    assert requests(samples, "/v1/audio/transcriptions", "400") == 1
    assert requests(samples, "/transcribe", "400") == 1
    # the route's pattern, never the path a client made up
    assert requests(samples, "/static/{name}", "200", "GET") == 1
    assert requests(samples, "/static/{name}", "404", "GET") == 1
    assert requests(samples, "unmatched", "404", "GET") == 1
    assert requests(samples, "unmatched", "405", "GET") == 1
    paths = {dict(labels).get("route") for name, labels in samples if "requests" in name}
    assert not {"/static/app.js", "/no/such/path"} & paths


async def test_a_method_a_client_invents_is_counted_as_other(client) -> None:
    await client.request("PROPFIND", "/coffee")
    assert requests(await scrape(client), "unmatched", "404", "other") == 1


async def test_audio_seconds_of_the_files_transcribed(client) -> None:
    assert value(await scrape(client), "hermes_audio_seconds_total", mode="file") == 0
    for route in ("/v1/audio/transcriptions", "/transcribe"):
        assert (await client.post(route, data=upload(JFK))).status == 200
    samples = await scrape(client)
    assert value(samples, "hermes_audio_seconds_total", mode="file") == pytest.approx(22.0, 0.01)
    assert value(samples, "hermes_audio_seconds_total", mode="stream") == 0


async def test_refused_uploads_are_counted_by_reason_and_waits_are_timed(
    make_client, backend
) -> None:
    client = await make_client(max_uploads_running=1, max_uploads_waiting=1)
    backend.hold()
    first = asyncio.create_task(client.post("/transcribe", data=upload()))
    await backend.until_waiting(1)
    second = asyncio.create_task(client.post("/transcribe", data=upload()))
    await asyncio.sleep(0.3)  # the second waits for its turn
    samples = await scrape(client)
    assert value(samples, "hermes_uploads_admitted") == 2
    await api_error(await client.post("/transcribe", data=upload()), 503, "server_busy")
    backend.release()
    assert [reply.status for reply in await asyncio.gather(first, second)] == [200, 200]
    samples = await scrape(client)
    refusals = "hermes_upload_refusals_total"
    assert value(samples, refusals, reason="waiting_room_full") == 1
    assert value(samples, refusals, reason="client_limit") == 0
    assert value(samples, refusals, reason="decoded_audio_budget") == 0
    assert requests(samples, "/transcribe", "503") == 1
    wait = "hermes_upload_admission_wait_seconds"
    assert value(samples, f"{wait}_count") == 2  # every upload that took a turn
    assert value(samples, f"{wait}_bucket", le="0.01") == 1  # the first at once
    assert value(samples, f"{wait}_sum") >= 0.3  # the second after the first
    assert value(samples, "hermes_uploads_admitted") == 0


async def test_uploads_refused_per_client_and_for_decoded_audio(
    make_client, backend, tmp_path, jfk_audio
) -> None:
    """One upload per client, and 2 MB of decoded audio: a 22 s upload (1.4 MB) waits at the
    model; the same client's next is refused, and another's for want of room."""
    other_key = f"{KEY}-other"
    client = await make_client(
        max_uploads_per_client=1,
        max_decoded_audio_mb=2,
        max_audio_seconds=30,
        api_keys=f"{KEY},{other_key}",
    )
    path = wav(tmp_path, np.concatenate([jfk_audio] * 2))

    def post(key: str):
        return client.post(
            "/transcribe", data=upload(path), headers={"Authorization": f"Bearer {key}"}
        )

    backend.hold()
    first = asyncio.create_task(post(KEY))
    await backend.until_waiting(1)
    await api_error(await post(KEY), 503, "server_busy")
    await api_error(await post(other_key), 503, "server_busy")
    backend.release()
    assert (await first).status == 200
    samples = await scrape(client, Authorization=f"Bearer {KEY}")
    assert value(samples, "hermes_upload_refusals_total", reason="client_limit") == 1
    assert value(samples, "hermes_upload_refusals_total", reason="decoded_audio_budget") == 1
    assert value(samples, "hermes_upload_refusals_total", reason="waiting_room_full") == 0


async def test_a_streams_finals_steps_and_audio(make_client, jfk_audio) -> None:
    """The session of the protocol test: two steps at the model, two finals."""
    backend = ScriptedBackend(["one two", "one two three"])
    client = await make_client(backend)
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert (await receive(ws))["type"] == "partial"
        assert value(await scrape(client), "hermes_streams_active") == 1
        await ws.send_bytes(pcm16(seconds(jfk_audio, 2.3, 4.6)))
        messages = await until(ws, "final")
        await ws.send_json({"type": "stop"})
        messages += await until(ws)
        await closing(ws)
    finals = [message for message in messages if message["type"] == "final"]
    async with asyncio.timeout(5):  # counted once its handler has returned
        while not requests(samples := await scrape(client), "/stream-audio", "101", "GET"):
            await asyncio.sleep(0.02)
    assert len(finals) == 2
    latency = "hermes_stream_final_latency_seconds"
    assert value(samples, f"{latency}_count") == 2
    # the audio each final ends with came less than the test's few seconds before it
    assert 0 < value(samples, f"{latency}_sum") < 10
    assert value(samples, f"{latency}_bucket", le="+Inf") == 2
    steps = "hermes_stream_step_duration_seconds"
    assert value(samples, f"{steps}_count") == 2  # the read at stop is not a step
    assert value(samples, "hermes_audio_seconds_total", mode="stream") == pytest.approx(4.6, 0.01)
    assert value(samples, "hermes_streams_active") == 0
    assert value(samples, "hermes_stream_skipped_seconds_total", reason="overload") == 0


async def test_audio_the_model_never_heard_is_counted_by_reason(make_client, jfk_audio) -> None:
    client = await make_client(ScriptedBackend(languages={"en"}))
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "language": "xx"})  # refused by the model
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert (await receive(ws))["type"] == "error"
        await ws.send_json({"type": "stop"})
        await until(ws)
    samples = await scrape(client)
    skipped = "hermes_stream_skipped_seconds_total"
    assert value(samples, skipped, reason="rejected") == pytest.approx(2.3, abs=0.01)
    assert value(samples, skipped, reason="model_unavailable") == 0


async def test_streams_refused_are_counted(make_client) -> None:
    client = await make_client(max_streams=1)
    first = await client.ws_connect("/stream-audio")
    second = await client.ws_connect("/stream-audio")
    assert (await closing(second)).data == 1013
    await first.close()
    samples = await scrape(client)
    assert value(samples, "hermes_stream_refusals_total", reason="streams_limit") == 1
    assert value(samples, "hermes_stream_refusals_total", reason="client_limit") == 0


class ReplicatedBackend(ScriptedBackend):
    """Describes replicas as the Triton pool does."""

    def describe(self) -> dict[str, object]:
        replica = {"dispatched": 7, "failures": 1, "wake_ups": 3}
        return {
            **super().describe(),
            "replicas": [
                {"address": "10.0.0.5:8001", "healthy": True, "outstanding": 2, **replica},
                {"address": "10.0.0.6:8001", "healthy": False, "outstanding": 0, **replica},
            ],
        }


async def test_replicas_are_read_from_the_backend_when_scraped(make_client) -> None:
    samples = await scrape(await make_client(ReplicatedBackend()))
    for address, healthy, outstanding in (("10.0.0.5:8001", 1, 2), ("10.0.0.6:8001", 0, 0)):
        assert value(samples, "hermes_triton_replica_healthy", address=address) == healthy
        assert (
            value(samples, "hermes_triton_replica_outstanding_requests", address=address)
            == outstanding
        )
        assert value(samples, "hermes_triton_replica_dispatched_requests_total", address=address)
        assert value(samples, "hermes_triton_replica_failures_total", address=address) == 1
        assert value(samples, "hermes_triton_replica_wake_ups_total", address=address) == 3


async def test_no_replica_series_for_a_backend_without_replicas(client) -> None:
    assert not [name for name, _ in await scrape(client) if "replica" in name]


async def test_the_event_loops_lag_is_noted_while_the_app_runs(client) -> None:
    await asyncio.sleep(LAG_INTERVAL_S * 2.5)
    samples = await scrape(client)
    noted = value(samples, "hermes_event_loop_lag_seconds_count")
    assert noted >= 1
    # the test's loop is idle: every note is in the buckets of a few milliseconds
    assert value(samples, "hermes_event_loop_lag_seconds_bucket", le="0.25") == noted


async def test_metrics_need_a_key_when_keys_are_on(make_client) -> None:
    client = await make_client(api_keys=KEY)
    await api_error(await client.get("/metrics"), 401, "invalid_api_key")
    await api_error(await client.get(f"/metrics?token={KEY}"), 401, "invalid_api_key")
    samples = await scrape(client, Authorization=f"Bearer {KEY}")
    assert requests(samples, "/metrics", "401", "GET") == 2


async def test_openmetrics_when_the_scraper_asks_for_it(client) -> None:
    reply = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await reply.text()).endswith("# EOF\n")


async def test_each_app_counts_apart(make_client) -> None:
    one, other = await make_client(), await make_client()
    await one.get("/healthz")
    assert requests(await scrape(one), "/healthz", "200", "GET") == 1
    assert requests(await scrape(other), "/healthz", "200", "GET") == 0


async def test_a_realtime_sessions_deltas_steps_and_audio(client, backend, jfk_audio) -> None:
    """A Realtime turn is a live stream like /stream-audio's: its deltas are finals."""
    async with client.ws_connect(realtime.PATH) as ws:
        await realtime.opened(ws)
        await ws.send_json(realtime.MANUAL)
        assert (await realtime.receive(ws))["type"] == "session.updated"
        await realtime.send_in_chunks(ws, realtime.at_24k(jfk_audio), chunk_s=1.0)
        await asyncio.sleep(0.6)  # a couple of beats: steps run while the turn is open
        assert value(await scrape(client), "hermes_streams_active") == 1
        await ws.send_json({"type": "input_audio_buffer.commit"})
        events = await realtime.until(ws, "conversation.item.input_audio_transcription.completed")
    deltas = realtime.of_type(events, "conversation.item.input_audio_transcription.delta")
    samples = await scrape(client)
    assert deltas
    assert value(samples, "hermes_stream_final_latency_seconds_count") == len(deltas)
    assert 0 < value(samples, "hermes_stream_final_latency_seconds_sum") < 10 * len(deltas)
    steps = sum(call.options.low_latency for call in backend.calls)
    assert steps >= 1
    assert value(samples, "hermes_stream_step_duration_seconds_count") == steps
    assert value(samples, "hermes_audio_seconds_total", mode="stream") == pytest.approx(11.0, 0.01)
