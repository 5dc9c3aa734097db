"""Reading Triton's request trace back: the model's idle time while requests waited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.triton_trace import IdleWithBacklog, Stretch, idle_with_backlog

MS = 1_000_000


def traced(path: Path, requests: list[tuple]) -> Path:
    """Triton's trace file for (model, queued, execution start, execution end[, request id])
    in ms, as the server writes it: the model named in one entry (with the request's id where
    it has one), each timestamp in an entry of its own."""
    entries: list[dict] = []
    for trace_id, (model, queued, start, end, *request_id) in enumerate(requests, start=1):
        named = {"id": trace_id, "model_name": model, "model_version": 1}
        entries.append(named | ({"request_id": request_id[0]} if request_id else {}))
        for name, ms in (
            ("REQUEST_START", queued),
            ("QUEUE_START", queued),
            ("COMPUTE_START", start),
            ("COMPUTE_END", end),
        ):
            entries.append({"id": trace_id, "timestamps": [{"name": name, "ns": ms * MS}]})
    path.write_text(json.dumps(entries))
    return path


def test_a_late_hand_over_with_requests_waiting_is_counted(tmp_path: Path) -> None:
    trace = traced(
        tmp_path / "trace.json",
        [
            ("whisper", 0, 40, 1000),
            ("whisper", 5, 40, 1000),  # the same execution
            ("whisper", 500, 1500, 1600),  # queued during it, handed over 500 ms after it
            ("whisper", 2000, 2040, 2100),  # nothing waited: not a hand-over
            ("speaker", 1700, 1700, 1750),  # another model's executions are not whisper's
        ],
    )
    found = idle_with_backlog(trace, Stretch(0, 10_000 * MS))
    assert found == IdleWithBacklog((0.5,))
    assert found.describe() == "1 hand-overs: 500 ms in all, longest 500 ms"


def test_only_executions_within_the_stretch(tmp_path: Path) -> None:
    trace = traced(
        tmp_path / "trace.json",
        [("whisper", 0, 0, 100), ("whisper", 50, 130, 200), ("whisper", 150, 260, 300)],
    )
    assert idle_with_backlog(trace, Stretch(0, 10_000 * MS)).gaps_s == pytest.approx((0.03, 0.06))
    assert idle_with_backlog(trace, Stretch(250 * MS, 10_000 * MS)).gaps_s == pytest.approx((0.06,))
    assert idle_with_backlog(trace, Stretch(400 * MS, 500 * MS)).describe() == (
        "no hand-over with requests waiting"
    )


def test_no_trace_is_said_not_guessed(tmp_path: Path) -> None:
    found = idle_with_backlog(tmp_path / "never-written.json", Stretch(0, 1))
    assert not found.traced and found.describe() == "not known: tritonserver wrote no trace"


def test_wake_ups_are_not_work_that_waited(tmp_path: Path) -> None:
    """The gateway's wake-up requests (request id `wake-up`) are no work that waited, and an
    execution of them alone no work done: they are counted apart."""
    trace = traced(
        tmp_path / "trace.json",
        [
            ("whisper", 0, 40, 1000),
            ("whisper", 500, 1500, 1501, "wake-up"),  # alone, 500 ms after: nothing waited
            ("whisper", 900, 1540, 1600),  # waited for the model, idle since 1000 (but 1 ms)
            ("whisper", 1520, 1540, 1600, "wake-up"),  # rode with it
            ("whisper", 1580, 1640, 1641, "wake-up"),  # queued during it: not work waiting
        ],
    )
    found = idle_with_backlog(trace, Stretch(0, 10_000 * MS))
    assert found == IdleWithBacklog((0.54,), wake_ups=3, wake_up_executions=2)
    assert found.describe() == (
        "1 hand-overs: 540 ms in all, longest 540 ms; 3 wake-ups, 2 executions of them alone"
    )
