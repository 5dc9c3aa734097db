"""`GET /metrics` through the real gateway and the session's real Triton: the replica is
healthy with nothing outstanding after an upload it transcribed, and the upload's audio and
answer are counted; with keys on, Prometheus's key is needed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.tools.local_triton import LocalTriton
from testsupport.clips import DATA_DIR
from testsupport.http import form

pytestmark = pytest.mark.integration

KEY = "hk-test-prometheus-5e1a"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_triton_replica_is_healthy_and_the_upload_counted(
    make_gateway, gateway_settings, triton: LocalTriton
) -> None:
    gateway = await make_gateway(replace(gateway_settings, api_keys=KEY))
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert (await gateway.get("/metrics")).status == 401
    reply = await gateway.post(
        "/v1/audio/transcriptions", data=form(DATA_DIR / "jfk.flac"), headers=bearer
    )
    assert reply.status == 200, await reply.text()
    scraped = await gateway.get("/metrics", headers=bearer)
    assert scraped.status == 200
    values = samples(await scraped.text())
    replica = frozenset({("address", triton.grpc_url)})
    assert values[("hermes_triton_replica_healthy", replica)] == 1
    assert values[("hermes_triton_replica_outstanding_requests", replica)] == 0
    assert values[("hermes_triton_replica_dispatched_requests_total", replica)] >= 1
    assert values[("hermes_triton_replica_failures_total", replica)] == 0
    assert ("hermes_triton_replica_wake_ups_total", replica) in values
    audio = ("hermes_audio_seconds_total", frozenset({("mode", "file")}))
    assert values[audio] == pytest.approx(11.0, abs=0.1)
    answered = {("route", "/v1/audio/transcriptions"), ("method", "POST"), ("status", "200")}
    assert values[("hermes_http_requests_total", frozenset(answered))] == 1
