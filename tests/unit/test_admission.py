"""What uploads may hold and how often they may be refused, per client
(gateway.server.admission: `RefusalRecord`, `AudioBudget`)."""

from __future__ import annotations

import sys
import threading

import pytest

from gateway.modes.audio import most_decoded_bytes
from gateway.server.admission import AudioBudget, RefusalRecord, client_share_bytes
from gateway.server.errors import ApiError

MB = 2**20


def test_a_client_backs_off_until_its_oldest_counted_refusal_leaves_the_window() -> None:
    now = [100.0]
    record = RefusalRecord(3, 60.0, lambda: now[0])
    for at in (100.0, 110.0, 120.0):
        now[0] = at
        assert record.backoff_s("a") == 0.0
        record.record("a")
    assert record.backoff_s("a") == pytest.approx(40.0)  # the first leaves at 160 s
    assert record.backoff_s("b") == 0.0  # another client
    now[0] = 160.0
    assert record.backoff_s("a") == 0.0  # two left in the window
    record.record("a")
    assert record.backoff_s("a") == pytest.approx(10.0)  # the one of 110 s leaves at 170 s
    now[0] = 300.0
    assert record.backoff_s("a") == 0.0
    assert record.clients == 0  # nothing kept for a client with no refusal left


def test_a_clients_share_is_half_the_budget_or_the_longest_upload() -> None:
    three_hours = most_decoded_bytes(3 * 3600)
    assert three_hours == 10_801 * 16_000 * 4  # the decoder writes up to a second past it
    assert client_share_bytes(768 * MB, three_hours) == three_hours
    assert client_share_bytes(768 * MB, most_decoded_bytes(150)) == 384 * MB


def test_claims_count_against_the_total_and_the_clients_share() -> None:
    refusals: list[str] = []
    budget = AudioBudget(10 * MB, 6 * MB, refusals.append)
    first, second, other = budget.claim("a"), budget.claim("a"), budget.claim("b")
    first.grow(4 * MB)
    second.grow(2 * MB)
    with pytest.raises(ApiError, match="this client's uploads hold 6 MB") as refused:
        second.grow(1)
    assert (refused.value.status, refused.value.code) == (503, "server_busy")
    other.grow(4 * MB)
    with pytest.raises(ApiError, match="uploads hold 10 MB of decoded audio of the 10 MB"):
        other.grow(1)
    assert refusals == ["client_decoded_audio", "decoded_audio_budget"]
    first.give_back()
    second.grow(3 * MB)  # the client's first upload is done: its share is free again
    assert (budget.held_bytes, dict(budget.held_by_client)) == (9 * MB, {"a": 5 * MB, "b": 4 * MB})
    second.give_back()
    other.give_back()
    assert (budget.held_bytes, dict(budget.held_by_client)) == (0, {})


def test_claims_grown_in_many_threads_at_once_add_up() -> None:
    """Claims grow in the threads that read decoders' output while others are given back:
    with the interpreter switching threads as often as it can, the counts still come back to
    nothing (without the budget's lock a client's count was deleted twice, or drifted)."""
    budget = AudioBudget(1 << 40, 1 << 40)
    failures: list[BaseException] = []

    def work(client: str) -> None:
        try:
            for _ in range(20_000):
                claim = budget.claim(client)
                claim.grow(3)
                claim.grow(5)
                claim.give_back()
        except BaseException as exc:  # reported by the asserts below
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(f"c{i % 2}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert (budget.held_bytes, dict(budget.held_by_client)) == (0, {})
