"""Where the Triton replicas are: `host:port` endpoints, as the `triton_url` setting names
them. Parsed once with the settings; resolved to replica addresses by the pool."""

from __future__ import annotations

from dataclasses import dataclass


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def parse_endpoints(spec: str) -> tuple[Endpoint, ...]:
    """`"a:8001, b:8001"` → endpoints; IPv6 literals in brackets (`[::1]:8001`)."""
    endpoints = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, sep, port = item.rpartition(":")
        if (
            not sep
            or not host
            or not (port.isascii() and port.isdigit())
            or not 0 < int(port) < 65536
        ):
            raise ValueError(f"Triton endpoint {item!r} is not host:port")
        endpoints.append(Endpoint(host.removeprefix("[").removesuffix("]"), int(port)))
    if not endpoints:
        raise ValueError("no Triton endpoint given")
    return tuple(endpoints)
