"""Which Triton replicas the gateway knows: endpoint parsing, resolution, membership.

Dispatch, failover and recovery are tested against real Triton servers in
tests/integration/test_replicas.py.
"""

from __future__ import annotations

import pytest

from gateway.backend.endpoints import Endpoint, parse_endpoints
from gateway.backend.triton_pool import TritonPool, resolve_with_dns


def test_endpoints_are_comma_separated_host_ports() -> None:
    assert parse_endpoints("triton:8001") == (Endpoint("triton", 8001),)
    assert parse_endpoints(" a:1 , [::1]:8001,") == (Endpoint("a", 1), Endpoint("::1", 8001))


@pytest.mark.parametrize(
    "spec", ["", "triton", "triton:", ":8001", "triton:0", "triton:99999", "triton:8²"]
)
def test_malformed_endpoints_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="Triton endpoint|no Triton endpoint"):
        parse_endpoints(spec)


async def test_literal_addresses_resolve_to_themselves() -> None:
    assert await resolve_with_dns("10.1.2.3", 8001) == ["10.1.2.3:8001"]
    assert await resolve_with_dns("::1", 8001) == ["[::1]:8001"]


async def test_a_name_resolves_to_its_ipv4_addresses() -> None:
    assert await resolve_with_dns("localhost", 8001) == ["127.0.0.1:8001"]


async def test_membership_follows_resolution_and_survives_a_failed_lookup() -> None:
    answers: dict[str, list[str] | OSError] = {"triton": ["10.0.0.1:8001", "10.0.0.2:8001"]}

    async def resolver(host: str, port: int) -> list[str]:
        answer = answers[host]
        if isinstance(answer, OSError):
            raise answer
        return answer

    pool = TritonPool(
        parse_endpoints("triton:8001"), "whisper", timeout_s=1, ready_timeout_s=1, resolver=resolver
    )
    try:
        await pool.refresh()
        assert [r.address for r in pool.replicas] == ["10.0.0.1:8001", "10.0.0.2:8001"]
        answers["triton"] = ["10.0.0.2:8001", "10.0.0.3:8001"]  # a pod replaced
        await pool.refresh()
        assert [r.address for r in pool.replicas] == ["10.0.0.2:8001", "10.0.0.3:8001"]
        answers["triton"] = OSError("DNS down")
        await pool.refresh()
        assert [r.address for r in pool.replicas] == ["10.0.0.2:8001", "10.0.0.3:8001"]
    finally:
        await pool.close()
