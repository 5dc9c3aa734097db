"""The soak's judgement of its Realtime sessions and diarized uploads (benchmarks/soak.py), its
rule that every kind of client it was asked for did some work, and its latency rules: live
clients under the mixed load against alone, and at the mixed phase's end against its start."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.audio import Item
from benchmarks.service import COMPLETED, FAILED, STARTED, RealtimeRun, StreamRun, UploadReply
from benchmarks.soak import (
    Ledger,
    by_third,
    judge_realtime,
    latency_rules,
    load_ran_rule,
    unlabelled_segments,
)

ITEM = Item("clip", Path("clip.wav"), "the grass was wet")


def session(*events: dict[str, Any]) -> RealtimeRun:
    return RealtimeRun(events=[(float(t), event) for t, event in enumerate(events)])


def started(item_id: str) -> dict[str, Any]:
    return {"type": STARTED, "item_id": item_id}


def completed(item_id: str, transcript: str) -> dict[str, Any]:
    return {"type": COMPLETED, "item_id": item_id, "transcript": transcript}


def judged(run: RealtimeRun) -> Ledger:
    ledger = Ledger({ITEM.name: 0.0})
    judge_realtime(run, ITEM, ledger, "session")
    return ledger


def test_a_session_whose_turns_hold_the_text_passes() -> None:
    run = session(
        started("a"), completed("a", " The grass."), started("b"), completed("b", "Was wet.")
    )
    assert run.text == "The grass. Was wet."
    ledger = judged(run)
    assert ledger.errors == [] and ledger.lost == []


def test_a_session_that_lost_a_turns_words_is_an_error() -> None:
    ledger = judged(session(started("a"), completed("a", "The grass.")))
    assert ledger.lost == ["session: WER 50.0 % against 0.0 % in file mode"]


def test_a_failed_turn_and_an_error_event_are_errors() -> None:
    failure = {"code": "model_unavailable"}
    ledger = judged(
        session(
            started("a"),
            {"type": FAILED, "item_id": "a", "error": failure},
            {"type": "error", "error": {"code": "invalid_event"}},
        )
    )
    assert ledger.errors == [
        f"session: turn failed: {failure}",
        "session: error event {'code': 'invalid_event'}",
    ]


def test_a_turn_left_open_or_no_turn_at_all_lost_work() -> None:
    assert judged(
        session(started("a"), completed("a", "The grass was wet."), started("b"))
    ).lost == ["session: 1 turns ended, 1 still open"]
    assert judged(session()).lost == ["session: 0 turns ended, 0 still open"]


def test_diarized_segments_must_each_name_a_speaker() -> None:
    def reply(body: dict[str, Any]) -> UploadReply:
        return UploadReply(200, body, None, 1.0)

    labelled = [{"text": "The grass.", "speaker": "A"}, {"text": "Was wet.", "speaker": "B"}]
    assert unlabelled_segments(reply({"segments": labelled})) == 0
    assert unlabelled_segments(reply({"segments": [*labelled, {"text": "Again."}]})) == 1
    assert unlabelled_segments(reply({"text": "The grass was wet."})) == 1  # no segments


def results(realtime: int, diarized: int, sessions: int, diarized_done: int) -> dict[str, Any]:
    return {
        "config": {"realtime": realtime, "diarized": diarized},
        "mixed": {"completed": 3},
        "realtime": {"sessions": sessions},
        "uploads": [
            {"format": "json", "completed": 2},
            {"format": "diarized_json", "completed": diarized_done},
        ],
    }


def test_every_kind_of_client_asked_for_must_have_completed_work() -> None:
    passed = load_ran_rule(results(1, 1, 2, 1))
    assert passed["passed"]
    assert passed["measured"] == "3 streams, 2 Realtime sessions, 2 uploads, 1 diarized uploads"
    assert not load_ran_rule(results(1, 1, 0, 1))["passed"]
    assert not load_ran_rule(results(1, 1, 2, 0))["passed"]
    not_asked = load_ran_rule(results(0, 0, 0, 0))
    assert not_asked["passed"] and not_asked["measured"] == "3 streams, 2 uploads"


def test_latencies_are_taken_from_the_first_and_the_last_third_of_their_arrivals() -> None:
    # finals at 10..19 s: the first third is 10-13 s, the last 16-19 s
    arrived = [(10.0 + t, 1.0 + t) for t in range(10)]
    thirds = by_third(arrived)
    assert thirds["first"]["count"] == 4 and thirds["first"]["max"] == 4.0
    assert thirds["last"]["count"] == 4 and thirds["last"]["p50"] == pytest.approx(8.5, abs=0.5)
    assert by_third([])["first"]["count"] == 0


def test_a_streams_finals_are_stamped_with_their_arrival() -> None:
    run = StreamRun(frame_sent=[100.0 + 0.1 * i for i in range(30)])  # 3 s in 100 ms frames
    run.messages = [
        (101.5, {"type": "final", "text": " The grass", "start": 0.0, "end": 1.0}),
        (101.6, {"type": "partial", "text": " was"}),
        (103.5, {"type": "final", "text": " was wet.", "start": 1.0, "end": 3.0}),
    ]
    arrived = run.arrived_final_latencies()
    assert [t for t, _ in arrived] == [101.5, 103.5]
    assert [latency for _, latency in arrived] == pytest.approx(run.final_latencies())
    assert run.final_latencies() == pytest.approx([0.6, 0.6])


def quantiles(p50: float, p95: float) -> dict[str, float]:
    return {"p50": p50, "p95": p95, "max": p95, "count": 10}


def timed(
    alone: tuple[float, float],
    mixed: tuple[float, float],
    first: tuple[float, float],
    last: tuple[float, float],
    realtime: int = 1,
) -> dict[str, Any]:
    thirds = {"first": quantiles(*first), "last": quantiles(*last)}
    return {
        "config": {"realtime": realtime},
        "alone": {"final_latency_s": quantiles(*alone)},
        "mixed": {"final_latency_s": quantiles(*mixed), "final_latency_by_third_s": thirds},
        "realtime": {"completed_after_stop_by_third_s": thirds},
    }


def test_live_clients_must_neither_wait_behind_file_work_nor_fall_behind_over_the_soak() -> None:
    rules = latency_rules(timed((4.3, 4.5), (4.4, 6.2), (4.2, 6.0), (4.5, 6.4)))
    assert [rule["passed"] for rule in rules] == [True, True, True]
    assert rules[0]["rule"] == (
        "streams' finals under the mixed load: p50 and p95 ≤ 1.5 × alone + 1 s"
    )
    assert rules[0]["measured"] == "p50 4.40 s (alone 4.30), p95 6.20 s (alone 4.50)"
    assert rules[1]["measured"] == (
        "p50 4.50 s (its first third 4.20), p95 6.40 s (its first third 6.00)"
    )
    # the speaker model's threads against Whisper's (2026-12-07): p95 11.4 s against 4.2 s alone
    held_back = latency_rules(timed((3.6, 4.2), (4.4, 11.4), (4.2, 6.0), (4.5, 6.4)))
    assert [rule["passed"] for rule in held_back] == [False, True, True]
    # a backlog that grows: each third later than the one before
    falling_behind = latency_rules(timed((4.3, 4.5), (5.0, 7.0), (4.2, 5.0), (9.0, 12.0)))
    assert [rule["passed"] for rule in falling_behind] == [True, False, False]
    no_finals = latency_rules(timed((4.3, 4.5), (math.nan, math.nan), (4.2, 5.0), (4.5, 6.0)))
    assert not no_finals[0]["passed"]
    assert len(latency_rules(timed((4, 4), (4, 4), (4, 4), (4, 4), realtime=0))) == 2
