"""The streaming capacity table and plot of `python -m benchmarks`, and how a result names
the command and CPU path that produced it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import plot, report, service
from benchmarks.stack import LoopLag
from gateway.server.metrics import GatewayMetrics


def level(streams: int, p50: float, kept_up: bool, **extra) -> dict:
    spread = {"median": 0.01, "min": 0.0, "max": 0.02, "runs": [0.0, 0.02]}
    return {
        "streams": streams,
        "final_latency_s": {"p50": p50, "p95": 2 * p50, "max": 3 * p50},
        "word_shown_latency_s": {"p50": p50 / 2},
        "wer_vs_file": spread,
        "wer": spread,
        "tail_s": {"median": 1.0, "max": 1.5 if kept_up else 40.0},
        "kept_up": kept_up,
        "cpu_s_per_audio_s": 0.25,
        **extra,
    }


SECTION = {
    "item": "stream-63s",
    "duration_s": 63.5,
    "repeat": 2,
    "levels": {
        "hermes, 3 s beat": [
            level(1, 3.0, True, inferences=40, executions=40),
            level(8, 4.0, True, inferences=320, executions=60),
        ],
        "WhisperLive": [level(1, 1.5, True), level(8, 30.0, False)],
    },
}


def test_a_levels_cores_show_the_gateways_event_loop_when_it_ran_apart() -> None:
    apart = {"cores_busy": {"gateway": 1.04, "triton": 0.4}, "gateway_loop_cores_busy": 0.81}
    in_process = {"cores_busy": {"gateway": 1.04, "triton": 0.4}}
    assert report.cores_busy(apart) == "1.04 (0.81) / 0.40"
    assert report.cores_busy(in_process) == "1.04 / 0.40"
    assert report.cores_busy({}) == "–"


def test_the_table_has_one_row_per_system_and_level_with_its_figures() -> None:
    rows = report.capacity_table(SECTION).splitlines()[2:]
    assert rows == [
        (
            "| hermes, 3 s beat | 1 | 3.00 / 6.00 / 9.00 | 1.50 | 1.0 % (max 2.0 %) | 1.0 % "
            "| 1.0 / 1.5 | yes | 0.25 | 40 / 40 |"
        ),
        (
            "| hermes, 3 s beat | 8 | 4.00 / 8.00 / 12.00 | 2.00 | 1.0 % (max 2.0 %) | 1.0 % "
            "| 1.0 / 1.5 | yes | 0.25 | 320 / 60 |"
        ),
        (
            "| WhisperLive | 1 | 1.50 / 3.00 / 4.50 | 0.75 | 1.0 % (max 2.0 %) | 1.0 % | 1.0 / 1.5 "
            "| yes | 0.25 | – |"
        ),
        (
            "| WhisperLive | 8 | 30.00 / 60.00 / 90.00 | 15.00 | 1.0 % (max 2.0 %) | 1.0 % "
            "| 1.0 / 40.0 | **no** | 0.25 | – |"
        ),
    ]


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "plot.png"
    plot.latency_against_streams(SECTION, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_the_command_line_starts_with_the_cpu_path_variables_that_were_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["benchmarks", "--only", "streaming"])
    for name in report.CPU_PATH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert report.command_line() == "python -m benchmarks --only streaming"
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert report.command_line("benchmarks.gpu") == (
        "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python -m benchmarks.gpu "
        "--only streaming"
    )


def test_the_torch_cpu_path_is_the_one_the_environment_holds_torch_to() -> None:
    script = "from benchmarks import report; print(report.torch_cpu_path())"
    held = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert held.stdout.strip() == "DEFAULT"


def test_the_slowest_finals_are_the_top_share_of_all_streams_finals_slowest_first() -> None:
    def run(*finals: tuple[float, float, str]) -> service.StreamRun:
        # frame i (the audio up to (i + 1) × 100 ms) sent as it ends: audio at `end` sent at `end`
        return service.StreamRun(
            frame_sent=[(i + 1) * service.FRAME_SECONDS for i in range(100)],
            messages=[
                (arrival, {"type": "final", "end": end, "text": text})
                for arrival, end, text in finals
            ],
        )

    runs = [
        run((2.0, 1.5, " one"), (5.0, 2.0, " two")),  # latencies 0.5 and 3.0
        run((4.0, 3.0, " three"), (4.5, 2.5, " four")),  # 1.0 and 2.0
    ]
    assert service.slowest_finals(runs, share=0.5) == [
        {"stream": 0, "end_s": 2.0, "latency_s": pytest.approx(3.0), "text": " two"},
        {"stream": 1, "end_s": 2.5, "latency_s": pytest.approx(2.0), "text": " four"},
    ]
    assert [f["text"] for f in service.slowest_finals(runs)] == [" two"]  # at least one


def test_a_realtime_sessions_turns_are_timed_from_the_audio_that_ended_them() -> None:
    def stop(arrival: float, item: str, end_ms: int) -> tuple[float, dict]:
        return arrival, {"type": service.STOPPED, "item_id": item, "audio_end_ms": end_ms}

    run = service.RealtimeRun(
        frame_sent=[(i + 1) * service.FRAME_SECONDS for i in range(100)],  # as in real time
        clip_s=9.0,
        events=[
            (0.1, {"type": "session.created"}),
            (0.5, {"type": service.STARTED, "item_id": "a"}),
            stop(3.2, "a", 3000),
            (4.0, {"type": service.STARTED, "item_id": "b"}),
            (3.9, {"type": service.ENDED[0], "item_id": "a"}),
            stop(8.3, "b", 8000),
            (9.5, {"type": service.ENDED[1], "item_id": "b"}),  # failed: ended all the same
            (9.6, {"type": service.STARTED, "item_id": "c"}),
        ],
    )
    assert run.stop_latencies() == pytest.approx([0.2, 0.3])
    assert run.completion_latencies() == pytest.approx([0.9, 1.5])
    assert run.turns == 2
    assert run.unfinished == 1  # "c" started and has not ended
    assert run.tail_s == pytest.approx(0.5)  # the last ended 0.5 s after the clip's end was sent
    assert service.RealtimeRun(frame_sent=[0.1], clip_s=0.1).tail_s == math.inf
    assert not run.settled()  # "c" is open, and the update sent after the audio unanswered
    run.events[-1] = (9.6, {"type": service.UPDATED})
    assert run.settled()  # (the monotonic clock is long past 9.6 s)


def test_the_gateways_loop_lag_is_read_from_its_metrics_page_per_level() -> None:
    metrics = GatewayMetrics()
    for lag in (0.0005, 0.002, 0.004):
        metrics.loop_lag.observe(lag)
    before = LoopLag.of(metrics.exposition("")[0].decode())
    for lag in [0.0005] * 18 + [0.03, 0.2]:  # a level: 20 notes, the 19th and 20th late
        metrics.loop_lag.observe(lag)
    level = LoopLag.of(metrics.exposition("")[0].decode()).since(before)
    assert level.count == 20
    assert level.mean_ms == pytest.approx(1000 * (18 * 0.0005 + 0.03 + 0.2) / 20)
    assert level.p95_bound_ms == 50  # the 19th of 20 is in the bucket up to 50 ms
    assert level.describe() == "12.0 / ≤ 50"
    assert LoopLag.of(GatewayMetrics().exposition("")[0].decode()).describe() == "0.0 / ≤ 1"
    assert LoopLag.between(before, None) is None  # the gateway ran in the benchmark's process
