"""Which Triton replicas the gateway knows: endpoint parsing, resolution, membership.

Dispatch, failover and recovery are tested against real Triton servers in
tests/integration/test_replicas.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from gateway.backend import triton_client
from gateway.backend.endpoints import Endpoint, parse_endpoints
from gateway.backend.triton_pool import TritonPool, resolve_with_dns
from gateway.core.contract import (
    AsrBusy,
    AsrFailed,
    AsrInterrupted,
    AsrRejected,
    AsrUnavailable,
    ServedModel,
    TranscribeOptions,
    WindowResult,
    is_multilingual,
)


def test_endpoints_are_comma_separated_host_ports() -> None:
    assert parse_endpoints("triton:8001") == (Endpoint("triton", 8001),)
    assert parse_endpoints(" a:1 , [::1]:8001,") == (Endpoint("a", 1), Endpoint("::1", 8001))


@pytest.mark.parametrize(
    "spec", ["", "triton", "triton:", ":8001", "triton:0", "triton:99999", "triton:8²"]
)
def test_malformed_endpoints_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="Triton endpoint|no Triton endpoint"):
        parse_endpoints(spec)


async def test_literal_addresses_resolve_to_themselves() -> None:
    assert await resolve_with_dns("10.1.2.3", 8001) == ["10.1.2.3:8001"]
    assert await resolve_with_dns("::1", 8001) == ["[::1]:8001"]


async def test_a_name_resolves_to_its_ipv4_addresses() -> None:
    assert await resolve_with_dns("localhost", 8001) == ["127.0.0.1:8001"]


async def test_membership_follows_resolution_and_survives_a_failed_lookup() -> None:
    answers: dict[str, list[str] | OSError] = {"triton": ["10.0.0.1:8001", "10.0.0.2:8001"]}

    async def resolver(host: str, port: int) -> list[str]:
        answer = answers[host]
        if isinstance(answer, OSError):
            raise answer
        return answer

    pool = TritonPool(
        parse_endpoints("triton:8001"), "whisper", timeout_s=1, ready_timeout_s=1, resolver=resolver
    )
    try:
        await pool.refresh()
        assert [r.address for r in pool.replicas] == ["10.0.0.1:8001", "10.0.0.2:8001"]
        answers["triton"] = ["10.0.0.2:8001", "10.0.0.3:8001"]  # a pod replaced
        await pool.refresh()
        assert [r.address for r in pool.replicas] == ["10.0.0.2:8001", "10.0.0.3:8001"]
        answers["triton"] = OSError("DNS down")
        await pool.refresh()
        assert [r.address for r in pool.replicas] == ["10.0.0.2:8001", "10.0.0.3:8001"]
    finally:
        await pool.close()


class FakeReplicaClient:
    """Stands in for one replica's TritonAsr: fails with `error`, or answers."""

    def __init__(self, error: Exception | None, weights: str = "tiny.en") -> None:
        self.error = error
        self.weights = weights
        self.calls = 0

    async def served_model(self) -> ServedModel:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return ServedModel(self.weights, is_multilingual(self.weights))

    async def transcribe(self, audio, options, *, priority):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return WindowResult("hello", "en")

    async def close(self) -> None:
        pass


async def two_replica_pool(first_error: Exception) -> tuple[TritonPool, list[FakeReplicaClient]]:
    async def resolver(host: str, port: int) -> list[str]:
        return ["10.0.0.1:8001", "10.0.0.2:8001"]

    pool = TritonPool(
        parse_endpoints("triton:8001"), "whisper", timeout_s=1, ready_timeout_s=1, resolver=resolver
    )
    await pool.refresh()
    fakes = [FakeReplicaClient(first_error), FakeReplicaClient(None)]
    for replica, fake in zip(pool.replicas, fakes, strict=True):
        await replica.client.close()
        replica.client = fake
    return pool, fakes


async def test_a_call_that_certainly_did_not_run_goes_to_another_replica() -> None:
    pool, (first, second) = await two_replica_pool(AsrUnavailable("connection refused"))
    try:
        result = await pool.transcribe(np.zeros(16000, np.float32), TranscribeOptions())
        assert result.text == "hello" and (first.calls, second.calls) == (1, 1)
        assert [r.healthy for r in pool.replicas] == [False, True]
    finally:
        await pool.close()


async def test_a_busy_replica_is_not_taken_out_and_another_may_take_the_call() -> None:
    pool, (first, second) = await two_replica_pool(AsrBusy("Request timeout expired"))
    try:
        result = await pool.transcribe(np.zeros(16000, np.float32), TranscribeOptions())
        assert result.text == "hello" and (first.calls, second.calls) == (1, 1)
        assert [r.healthy for r in pool.replicas] == [True, True]
        assert [r.failures for r in pool.replicas] == [0, 0]
    finally:
        await pool.close()


async def test_a_call_that_may_have_run_is_not_sent_again() -> None:
    pool, (first, second) = await two_replica_pool(AsrInterrupted("deadline exceeded"))
    try:
        with pytest.raises(AsrInterrupted):
            await pool.transcribe(np.zeros(16000, np.float32), TranscribeOptions())
        assert (first.calls, second.calls) == (1, 0)
        assert [r.healthy for r in pool.replicas] == [True, True]  # busy is not down
    finally:
        await pool.close()


async def test_the_served_model_comes_from_a_replica_that_answers() -> None:
    pool, (first, second) = await two_replica_pool(AsrUnavailable("connection refused"))
    try:
        assert await pool.served_model() == ServedModel("tiny.en", multilingual=False)
        assert (first.calls, second.calls) == (1, 1)
        pool.replicas[0].healthy = False  # a replica known to be down is asked last
        await pool.served_model()
        assert (first.calls, second.calls) == (1, 2)
        second.error = AsrUnavailable("gone too")
        with pytest.raises(AsrUnavailable):  # no replica can say
            await pool.served_model()
        assert (first.calls, second.calls) == (2, 3)
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("weights", "multilingual"),
    [("tiny.en", False), ("medium.en", False), ("base", True), ("large-v3-turbo", True)],
)
def test_english_only_weights_are_the_ones_named_en(weights, multilingual) -> None:
    assert is_multilingual(weights) is multilingual


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("StatusCode.UNAVAILABLE", AsrUnavailable),
        ("StatusCode.NOT_FOUND", AsrUnavailable),
        (None, AsrUnavailable),
        ("StatusCode.DEADLINE_EXCEEDED", AsrInterrupted),
        ("StatusCode.UNKNOWN", AsrInterrupted),
        ("StatusCode.INVALID_ARGUMENT", AsrRejected),
        ("StatusCode.INTERNAL", AsrFailed),
    ],
)
def test_tritons_statuses_say_whose_fault_and_whether_it_ran(status, kind) -> None:
    error = triton_client._error_of(InferenceServerException("boom", status=status))
    assert type(error) is kind


@pytest.mark.parametrize("message", ["Request timeout expired", "Exceeds maximum queue size"])
def test_a_request_tritons_bounded_queue_turned_away_is_busy_not_down(message) -> None:
    error = triton_client._error_of(
        InferenceServerException(message, status="StatusCode.UNAVAILABLE")
    )
    assert type(error) is AsrBusy and str(error) == f"speech model busy: {message}"
