"""WhisperLive's replies (completed segments and the incomplete tail, resent on every reply) as
hermes' stream messages: what the benchmark's latency and WER analysis reads. The replies are
shaped as whisper-live 0.10.0's server sends them (times as strings with three decimals)."""

from __future__ import annotations

from typing import Any

from benchmarks.whisperlive import segment_events

UID = "5b0c9d1e"
READY = {"uid": UID, "message": "SERVER_READY", "backend": "faster_whisper"}
LANGUAGE = {"uid": UID, "language": "en", "language_prob": 1}


def seg(start: str, end: str, text: str, completed: bool) -> dict[str, Any]:
    return {"start": start, "end": end, "text": text, "completed": completed}


def reply(*segments: dict[str, Any]) -> dict[str, Any]:
    return {"uid": UID, "segments": list(segments)}


def partial(text: str, start: float, end: float) -> dict[str, Any]:
    return {"type": "partial", "text": text, "start": start, "end": end}


def final(text: str, start: float, end: float) -> dict[str, Any]:
    return {"type": "final", "text": text, "start": start, "end": end}


FELLOW = seg("0.000", "3.000", " And so my fellow Americans.", True)
ASK_NOT = seg("3.000", "8.000", " Ask not what your country can do for you.", True)


def test_resent_and_revised_segments_become_one_final_each_and_changed_partials() -> None:
    replies = [
        (1.0, READY),
        (2.0, LANGUAGE),
        (2.0, reply(seg("0.000", "1.000", " and so", False))),
        (2.4, reply(seg("0.000", "1.400", " And so my...", False))),
        (2.8, reply(seg("0.000", "1.800", " And so my...", False))),  # same text, later end
        (3.2, reply(FELLOW, seg("3.000", "3.900", " Asp!", False))),
        (3.6, reply(FELLOW, seg("3.000", "4.300", " ask not", False))),
        (4.0, reply(FELLOW, ASK_NOT, seg("8.000", "8.700", " Ask what...", False))),
        (4.4, reply(FELLOW, ASK_NOT, seg("8.000", "8.700", " Ask what...", False))),  # resent
    ]
    assert segment_events(replies) == [
        (2.0, partial(" and so", 0.0, 1.0)),
        (2.4, partial(" And so my...", 0.0, 1.4)),
        (3.2, final(" And so my fellow Americans.", 0.0, 3.0)),
        (3.2, partial(" Asp!", 3.0, 3.9)),
        (3.6, partial(" ask not", 3.0, 4.3)),
        (4.0, final(" Ask not what your country can do for you.", 3.0, 8.0)),
        (4.0, partial(" Ask what...", 8.0, 8.7)),
        # never completed: final at the last new text, as WhisperLive's client keeps it
        (4.0, final(" Ask what...", 8.0, 8.7)),
        (4.0, partial("", 8.7, 8.7)),
    ]


def test_a_tail_the_server_completes_after_repeats_is_final_then_and_clears_the_partial() -> None:
    whole = seg("0.000", "8.000", " And so, my fellow Americans ask not what your country", True)
    first_tail = " ask what you can do for your country."
    tail = " Ask what you can do for your country."  # the same, revised
    replies = [
        (10.0, reply(whole, seg("8.000", "11.000", first_tail, False))),
        (11.0, reply(whole, seg("8.000", "11.000", tail, False))),
        *((12.0 + i, reply(whole, seg("8.000", "11.000", tail, False))) for i in range(8)),
        (21.0, reply(whole, seg("8.000", "11.000", tail, True))),
        (21.5, reply(whole, seg("8.000", "11.000", tail, True))),
    ]
    assert segment_events(replies) == [
        (10.0, final(whole["text"], 0.0, 8.0)),
        (10.0, partial(first_tail, 8.0, 11.0)),
        (11.0, partial(tail, 8.0, 11.0)),
        (21.0, final(tail, 8.0, 11.0)),
        (21.0, partial("", 11.0, 11.0)),
    ]


def test_segments_that_leave_the_resent_window_are_not_final_again() -> None:
    first = seg("0.000", "2.000", " One.", True)
    second = seg("2.000", "4.000", " Two.", True)
    third = seg("4.000", "6.000", " Three.", True)
    replies = [
        (1.0, reply(first, second, seg("4.000", "5.000", " Thr", False))),
        (2.0, reply(second, third)),  # send_last_n_segments dropped the oldest
    ]
    assert segment_events(replies) == [
        (1.0, final(" One.", 0.0, 2.0)),
        (1.0, final(" Two.", 2.0, 4.0)),
        (1.0, partial(" Thr", 4.0, 5.0)),
        (2.0, final(" Three.", 4.0, 6.0)),
        (2.0, partial("", 6.0, 6.0)),
    ]


def test_text_without_a_leading_space_gets_one_so_finals_concatenate() -> None:
    hello, hi = seg("0.000", "1.000", "Hello.", True), seg("1.000", "1.500", "Hi", False)
    replies = [(1.0, reply(hello, hi))]
    assert segment_events(replies) == [
        (1.0, final(" Hello.", 0.0, 1.0)),
        (1.0, partial(" Hi", 1.0, 1.5)),
        (1.0, final(" Hi", 1.0, 1.5)),
        (1.0, partial("", 1.5, 1.5)),
    ]


def test_no_segments_no_messages() -> None:
    assert segment_events([(1.0, READY), (2.0, LANGUAGE)]) == []
