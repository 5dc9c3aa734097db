"""The record of refused uploads per client (gateway.server.admission.RefusalRecord)."""

from __future__ import annotations

import pytest

from gateway.server.admission import RefusalRecord


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
