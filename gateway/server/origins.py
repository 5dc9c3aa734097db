"""Web origins (`scheme://host[:port]`): the pages that may open the WebSocket
(`allowed_origins`) and call the HTTP API (`cors_origins`)."""

from __future__ import annotations

from yarl import URL

ANY_ORIGIN = "*"


def normalise_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case and without the scheme's default port; None if
    `origin` is not of that form (`null`, a path, credentials...)."""
    try:
        url = URL(origin)
    except ValueError:
        return None
    if (
        url.host
        and url.path in ("", "/")
        and not (url.user or url.password or url.query_string or url.fragment)
    ):
        return str(url.origin())
    return None


def parse_origins(value: str) -> frozenset[str]:
    """Comma-separated origins (`https://app.example.com`, `http://localhost:5173`) or `*`,
    normalised; ValueError for an entry that is neither."""
    origins = set()
    for entry in filter(None, (part.strip() for part in value.split(","))):
        if (origin := ANY_ORIGIN if entry == ANY_ORIGIN else normalise_origin(entry)) is None:
            raise ValueError(f"{entry!r} is not an origin: expected scheme://host[:port] or *")
        origins.add(origin)
    return frozenset(origins)


def is_same_origin(origin: str, host: str | None) -> bool:
    """Whether the page at `origin` (normalised) is the gateway as the browser addressed it:
    the same host and port as the request's Host header (whose port defaults to the scheme's)."""
    if not host:
        return False
    scheme = origin.partition("://")[0]
    try:
        return str(URL.build(scheme=scheme, authority=host).origin()) == origin
    except ValueError:
        return False


def origin_allowed(origin: str, host: str | None, allowed: frozenset[str]) -> bool:
    if ANY_ORIGIN in allowed:
        return True
    normalised = normalise_origin(origin)
    return normalised is not None and (normalised in allowed or is_same_origin(normalised, host))
