"""The gateway's metrics without an app: a stream's final latency from when its audio came,
and the Triton pool's replicas as a scrape reads them."""

from __future__ import annotations

import pytest

from gateway.backend.endpoints import parse_endpoints
from gateway.backend.triton_pool import TritonPool
from gateway.server.metrics import GatewayMetrics, ReplicaCollector, StreamWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def latencies(metrics: GatewayMetrics) -> tuple[float, float]:
    """(count, sum) of the final-latency histogram."""
    registry = metrics.registry
    name = "hermes_stream_final_latency_seconds"
    return registry.get_sample_value(f"{name}_count"), registry.get_sample_value(f"{name}_sum")


def test_a_finals_latency_counts_from_the_frame_its_end_came_in() -> None:
    metrics, clock = GatewayMetrics(), Clock()
    watch = StreamWatch(metrics, clock)
    for _ in range(30):  # 3 s of 100 ms frames in real time
        watch.received(0.1)
        clock.now += 0.1
    assert clock.now == pytest.approx(103.0)
    watch.final(1.25)  # in the 13th frame, which came at 101.2
    watch.final(2.0)  # the 20th, at 101.9
    count, total = latencies(metrics)
    assert count == 2
    assert total == pytest.approx((103.0 - 101.2) + (103.0 - 101.9))
    stream = metrics.registry.get_sample_value("hermes_audio_seconds_total", {"mode": "stream"})
    assert stream == pytest.approx(3.0)


def test_small_frames_share_a_note_and_the_history_is_bounded() -> None:
    metrics, clock = GatewayMetrics(), Clock()
    watch = StreamWatch(metrics, clock)
    for _ in range(100_000):  # 1-sample frames, each arriving a sample's time apart
        watch.received(1 / 16000)
        clock.now += 1 / 16000
    assert len(watch._arrivals) <= StreamWatch.HISTORY
    watch.final(6.25)  # the note from 6.2 s: at most 0.1 s long
    _, total = latencies(metrics)
    assert clock.now - 100.0 - 6.25 <= total <= clock.now - 100.0 - 6.2 + 1e-6


def test_a_final_past_the_audio_received_counts_from_the_last_frame() -> None:
    """The resampler's tail comes with `finish`, not as a frame."""
    metrics, clock = GatewayMetrics(), Clock()
    watch = StreamWatch(metrics, clock)
    watch.received(1.0)
    clock.now += 2.0
    watch.final(1.004)
    assert latencies(metrics) == (1, pytest.approx(2.0))


def test_a_stream_split_keeps_the_arrivals_of_the_audio_after_the_split() -> None:
    """A Realtime turn ends at 1.05 s of a 1.5 s buffer: the next turn begins with the rest,
    whose finals count from when it came, not from the next frame."""
    metrics, clock = GatewayMetrics(), Clock()
    watch = StreamWatch(metrics, clock)
    for _ in range(15):
        watch.received(0.1)
        clock.now += 0.1
    after = watch.split_off(1.05)
    after.received(0.1)  # at 101.5, the next turn's 0.45-0.55 s
    clock.now = 102.0
    after.final(0.2)  # 1.25 s of the first turn: the frame that came at 101.2
    after.final(0.5)  # the frame after the split
    assert latencies(metrics) == (2, pytest.approx(0.8 + 0.5))
    stream = metrics.registry.get_sample_value("hermes_audio_seconds_total", {"mode": "stream"})
    assert stream == pytest.approx(1.6)  # the rest is not counted twice


def test_skipped_messages_count_their_seconds_by_reason() -> None:
    metrics = GatewayMetrics()
    watch = StreamWatch(metrics)
    watch.sent({"type": "skipped", "start": 1.5, "end": 4.0, "reason": "overload"})
    watch.sent({"type": "partial", "text": " hello"})
    sample = metrics.registry.get_sample_value
    assert sample("hermes_stream_skipped_seconds_total", {"reason": "overload"}) == 2.5
    assert sample("hermes_stream_skipped_seconds_total", {"reason": "model_error"}) == 0


async def test_the_pools_replicas_are_read_when_scraped() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["10.0.0.1:8001", "10.0.0.2:8001"]

    pool = TritonPool(
        parse_endpoints("triton:8001"), "whisper", timeout_s=1, ready_timeout_s=1, resolver=resolver
    )
    try:
        await pool.refresh()
        first, second = pool.replicas
        second.healthy, first.outstanding, first.dispatched = False, 3, 5
        metrics = GatewayMetrics()
        metrics.watch_backend(pool.describe)
        sample = metrics.registry.get_sample_value
        for replica, healthy, outstanding in ((first, 1, 3), (second, 0, 0)):
            labels = {"address": replica.address}
            assert sample("hermes_triton_replica_healthy", labels) == healthy
            assert sample("hermes_triton_replica_outstanding_requests", labels) == outstanding
        first.outstanding = 0  # read again at the next scrape, not kept
        assert sample("hermes_triton_replica_outstanding_requests", {"address": first.address}) == 0
        assert (
            sample("hermes_triton_replica_dispatched_requests_total", {"address": first.address})
            == 5
        )
    finally:
        await pool.close()


def test_a_backend_without_replicas_has_no_replica_series() -> None:
    assert list(ReplicaCollector(lambda: {"model": "scripted"}).collect())[0].samples == []
