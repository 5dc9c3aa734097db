"""The hostile soak's verdict (benchmarks/hostile.py): its rules per phase, and the check that
honest streams lost no words without a `skipped`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from benchmarks.hostile import (
    GATEWAY_PEAK_BOUND_MIB,
    RESTART,
    judged,
    stream_lost,
    unreported_words,
)
from benchmarks.service import FileReference, StreamRun

REFERENCE = FileReference(
    words=[("one", 1.0), ("two", 2.0), ("three", 3.0), ("four", 4.0), ("five", 5.0)],
    text="One two three four five",
)


def phase(name: str, **changes: Any) -> dict[str, Any]:
    honest = {
        "final_latency_s": {"p50": 4.0, "p95": 6.0, "max": 7.0, "count": 30},
        "wer": 0.0,
        "errors": [],
        "refusals": {},
        "lost": [],
    }
    result = {
        "name": name,
        "attack": {
            "got": {} if name == "baseline" else {"413 audio_too_long": 4},
            "unexpected": {},
        },
        "cost": {"peak_over_idle_mib": {"gateway": 100.0, "triton": 10.0}},
        "honest": honest,
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = result
        for key in parents:
            target = target[key]
        target[leaf] = value
    return result


def failed(phases: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["rule"] for c in p["checks"] if not c["passed"]] for p in judged(phases)]


def test_an_attack_that_changes_nothing_passes() -> None:
    assert failed([phase("baseline"), phase("overlong-files")]) == [[], []]


@pytest.mark.parametrize(
    ("p50", "p95", "passes"),
    [(7.0, 10.0, True), (7.01, 10.0, False), (4.0, 10.01, False), (1.0, 2.0, True)],
)
def test_latency_within_one_and_a_half_times_the_baseline_plus_a_second(
    p50: float, p95: float, passes: bool
) -> None:
    latency = {"p50": p50, "p95": p95, "max": 11.0, "count": 30}
    rules = failed([phase("baseline"), phase("ws-flood", honest__final_latency_s=latency)])[1]
    assert (rules == []) is passes, rules


def test_no_finals_at_all_is_not_within_the_latency() -> None:
    latency = {"p50": float("nan"), "p95": float("nan"), "max": float("nan"), "count": 0}
    assert failed([phase("baseline"), phase("ws-flood", honest__final_latency_s=latency)])[1]


def test_an_unexpected_answer_lost_work_or_an_honest_refusal_fails() -> None:
    rows = failed(
        [
            phase("baseline"),
            phase("multipart-flood", attack__unexpected={"500 (no code)": 1}),
            phase("slow-bodies", honest__lost=["uploader 0: TimeoutError"]),
            phase("hang-ups", honest__refusals={"upload 503 server_busy": 1}),
            phase("poison", attack__got={}),  # an attack that never ran proves nothing
            phase("overlong-files", honest__wer=0.051),
            phase("ws-flood", cost__peak_over_idle_mib={"gateway": GATEWAY_PEAK_BOUND_MIB + 1}),
        ]
    )
    assert rows[0] == []
    assert rows[1] == ["the attacker got only its documented answers"]
    assert rows[2] == ["lost without a report = 0"]
    assert rows[3] == ["honest errors and refusals = 0"]
    assert rows[4] == ["the attacker got only its documented answers"]
    assert rows[5] == ["honest WER ≤ baseline + 5 points"]
    assert rows[6] == [f"gateway peak ≤ idle + {GATEWAY_PEAK_BOUND_MIB:g} MiB"]


def test_the_restart_may_cost_honest_work_that_is_reported_but_must_recover_clean() -> None:
    after = {"errors": [], "lost": [], "streams_done": 3, "uploads": 2}
    outage = {
        "honest__errors": ["stream 0: error message 'model unavailable'"],
        "honest__refusals": {"upload 503 model_unavailable": 4},
        "honest__final_latency_s": {"p50": 40.0, "p95": 60.0, "max": 60.0, "count": 3},
    }
    restarted = phase(RESTART, after_recovery=after, **outage)
    assert failed([phase("baseline"), restarted])[1] == []
    lost = phase(RESTART, after_recovery=after, honest__lost=["stream 1: ..."], **outage)
    assert failed([phase("baseline"), lost])[1] == ["lost without a report = 0"]
    dirty = copy.deepcopy(after) | {"errors": ["uploader 0: HTTP 503"]}
    rows = failed([phase("baseline"), phase(RESTART, after_recovery=dirty)])
    assert rows[1] == ["after Triton is back: streams and uploads clean"]


def run(*messages: dict[str, Any], done: bool = True) -> StreamRun:
    result = StreamRun(messages=[(0.0, m) for m in messages], close_code=1000 if done else 1006)
    result.done_at = 1.0 if done else None
    return result


def final(text: str) -> dict[str, Any]:
    return {"type": "final", "text": text, "start": 0.0, "end": 5.0}


def test_words_are_accounted_for_when_final_or_inside_a_skipped_stretch() -> None:
    assert unreported_words(run(final(" One two three four five")), REFERENCE) == (0, 5)
    assert unreported_words(run(final(" One two")), REFERENCE) == (3, 5)
    skipped = {"type": "skipped", "start": 2.5, "end": 4.2, "reason": "model_unavailable"}
    # "three" and "four" end inside the stretch, "five" within a second of it
    assert unreported_words(run(final(" One two"), skipped), REFERENCE) == (0, 5)


def test_a_stream_lost_words_only_when_it_was_not_told() -> None:
    assert stream_lost(run(final(" One two three four five")), REFERENCE) is None
    assert "3 of 5 words" in stream_lost(run(final(" One two")), REFERENCE)
    assert "without done" in stream_lost(run(final(" One"), done=False), REFERENCE)
    error = {"type": "error", "message": "the model is unavailable"}
    told = run(final(" One two three four five"), error, done=False)
    assert stream_lost(told, REFERENCE) is None


def test_a_baseline_with_honest_errors_fails_itself() -> None:
    baseline = phase("baseline", honest__errors=["stream 0 baseline: error message '...'"])
    assert failed([baseline])[0] == ["honest errors and refusals = 0"]
