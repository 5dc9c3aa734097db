"""Who may use the gateway: API keys, the browser pages that may open the WebSocket, and the
client a request counts against in per-client limits.

API keys are off when none is configured (local use). When on, every route but the public
ones (health probes, the live page) needs `Authorization: Bearer <key>`; a WebSocket upgrade
may carry the key as `?token=<key>` instead, as browsers cannot set headers on one (the query
is accepted nowhere else: URLs end up in histories and proxy logs). A presented key is compared
with every configured key, as SHA-256 digests with `hmac.compare_digest`, so the time taken
says neither how close it came nor which key it resembled.

Browsers apply no same-origin policy to WebSockets: any page a user visits could open one to
the gateway. So a WebSocket upgrade that carries an `Origin` (browsers always send one) is
refused unless that origin is the gateway's own (its host:port is the request's Host) or is
listed in `allowed_origins`; clients without an Origin (not browsers) pass.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from yarl import URL

from gateway.server.errors import ApiError, Handler

if TYPE_CHECKING:
    from gateway.server.settings import Settings

ANY_ORIGIN = "*"
TOKEN_PARAMETER = "token"
CLIENT = web.RequestKey("client", str)  # set when an API key let the request in
_KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: fits a header and a URL


# --- API keys ----------------------------------------------------------------------------


def read_api_keys(api_keys: str, api_keys_file: str) -> tuple[str, ...]:
    """The keys of `api_keys` (comma-separated) and of the file `api_keys_file` (one per line;
    blank lines and `#` comments ignored). ValueError, never quoting a key, for an unreadable
    or empty file or a key that is not printable ASCII without spaces."""
    keys = [key.strip() for key in api_keys.split(",") if key.strip()]
    if api_keys_file:
        try:
            lines = Path(api_keys_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"api_keys_file: cannot read {api_keys_file}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"api_keys_file: {api_keys_file} is not UTF-8 text") from exc
        from_file = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not from_file:
            raise ValueError(f"api_keys_file: {api_keys_file} holds no key")
        keys += from_file
    for number, key in enumerate(keys, 1):
        if not _KEY.fullmatch(key):
            raise ValueError(f"API key #{number} has spaces or characters other than printable ASCII")
    return tuple(dict.fromkeys(keys))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    """The configured keys, held as digests; none means authentication is off."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key) for key in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, candidate: str) -> int | None:
        """The index of the key equal to `candidate`, or None. Every key is compared, equal or
        not, and all digests have the same length: the time does not depend on the answer."""
        digest = _digest(candidate)
        matches = [hmac.compare_digest(digest, key) for key in self._digests]
        return matches.index(True) if any(matches) else None


def _unauthorized(message: str, challenge: str) -> ApiError:
    return ApiError(401, message, "invalid_api_key", headers={hdrs.WWW_AUTHENTICATE: challenge})


def _presented_key(request: web.Request) -> str | None:
    """The key in `Authorization: Bearer`, or in `?token=` on a WebSocket upgrade; "" for an
    Authorization header of another scheme; None when the request carries none."""
    if (header := request.headers.get(hdrs.AUTHORIZATION)) is not None:
        scheme, _, credentials = header.strip().partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else ""
    if is_websocket_upgrade(request):
        return request.query.get(TOKEN_PARAMETER)
    return None


def authenticate(request: web.Request, keys: ApiKeys) -> str:
    """The client label (`key #N`) of the request's API key; 401 without a valid one."""
    presented = _presented_key(request)
    if presented is None:
        where = " (or ?token=<key> on a WebSocket)" if is_websocket_upgrade(request) else ""
        raise _unauthorized(
            f"no API key: send it as Authorization: Bearer <key>{where}", 'Bearer realm="hermes"'
        )
    if (index := keys.match(presented)) is None:
        raise _unauthorized("invalid API key", 'Bearer realm="hermes", error="invalid_token"')
    return f"key #{index + 1}"


def client_of(request: web.Request) -> str:
    """What per-client limits count by: the API key when keys are on, else the peer address
    (behind a reverse proxy that is the proxy's: turn API keys on there)."""
    return request.get(CLIENT) or request.remote or "unknown"


# --- browser origins ---------------------------------------------------------------------


def normalise_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case and without the scheme's default port; None if
    `origin` is not of that form (`null`, a path, credentials...)."""
    try:
        url = URL(origin)
    except ValueError:
        return None
    if url.host and url.path in ("", "/") and not (url.user or url.password or url.query_string or url.fragment):
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


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


# --- the middlewares ---------------------------------------------------------------------


def middlewares(settings: Settings, *, public: Collection[str]) -> list[Middleware]:
    """The Origin check of WebSocket upgrades, then the API key check, which skips the
    resources whose canonical path (`/healthz`, a static prefix...) is in `public`."""
    allowed = parse_origins(settings.allowed_origins)
    keys = ApiKeys(read_api_keys(settings.api_keys, settings.api_keys_file))

    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and is_websocket_upgrade(request) and not origin_allowed(
            origin, request.headers.get(hdrs.HOST), allowed
        ):
            raise ApiError(
                403,
                f"WebSocket connections from pages at {origin!r} are not allowed: open the "
                "page from the gateway itself, or add its origin to allowed_origins",
                "origin_not_allowed",
            )
        return await handler(request)

    @web.middleware
    async def check_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if keys:
            resource = request.match_info.route.resource
            if resource is None or resource.canonical not in public:
                request[CLIENT] = authenticate(request, keys)
        return await handler(request)

    return [check_origin, check_api_key]
