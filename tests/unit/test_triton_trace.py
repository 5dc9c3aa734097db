"""Reading Triton's request trace back: the model's idle time while requests waited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.triton_trace import IdleWithBacklog, Stretch, idle_with_backlog

MS = 1_000_000


def traced(path: Path, requests: list[tuple[str, int, int, int]]) -> Path:
    """Triton's trace file for (model, queued, execution start, execution end) in ms, as the
    server writes it: the model named in one entry, each timestamp in an entry of its own."""
    entries: list[dict] = []
    for trace_id, (model, queued, start, end) in enumerate(requests, start=1):
        entries.append({"id": trace_id, "model_name": model, "model_version": 1})
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
