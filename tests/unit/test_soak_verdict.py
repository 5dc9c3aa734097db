"""The soak's judgement of its Realtime sessions and diarized uploads (benchmarks/soak.py), and
its rule that every kind of client it was asked for did some work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.audio import Item
from benchmarks.service import COMPLETED, FAILED, STARTED, RealtimeRun, UploadReply
from benchmarks.soak import Ledger, judge_realtime, load_ran_rule, unlabelled_segments

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
