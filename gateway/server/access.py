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

import contextlib
import hashlib
import hmac
from collections.abc import Collection, Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from gateway.server.errors import ApiError, Handler
from gateway.server.origins import origin_allowed
from gateway.server.settings import Settings

TOKEN_PARAMETER = "token"
CLIENT = web.RequestKey("client", str)  # set when an API key let the request in


# --- API keys ----------------------------------------------------------------------------


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


def _presented_key(request: web.Request, token_allowed: bool) -> str | None:
    """The key in `Authorization: Bearer`, or in `?token=` where allowed; "" for an
    Authorization header of another scheme; None when the request carries none."""
    if (header := request.headers.get(hdrs.AUTHORIZATION)) is not None:
        scheme, _, credentials = header.strip().partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else ""
    if token_allowed:
        return request.query.get(TOKEN_PARAMETER)
    return None


def authenticate(request: web.Request, keys: ApiKeys, *, token_allowed: bool = False) -> str:
    """The client label (`key #N`) of the request's API key; 401 without a valid one.
    `token_allowed`: the key may come as `?token=` (a WebSocket upgrade of a WebSocket route)."""
    presented = _presented_key(request, token_allowed)
    if presented is None:
        where = " (or ?token=<key> on a WebSocket)" if token_allowed else ""
        raise _unauthorized(
            f"no API key: send it as Authorization: Bearer <key>{where}", 'Bearer realm="hermes"'
        )
    if (index := keys.match(presented)) is None:
        raise _unauthorized("invalid API key", 'Bearer realm="hermes", error="invalid_token"')
    return f"key #{index + 1}"


def is_trusted(request: web.Request, settings: Settings) -> bool:
    """Whether the caller may see the service's internals (replica addresses, counters): keys
    are off, or the request carried a valid one."""
    return not settings.keys or CLIENT in request


def client_of(request: web.Request) -> str:
    """What per-client limits count by: the API key when keys are on, else the peer address
    (behind a reverse proxy that is the proxy's: turn API keys on there)."""
    return request.get(CLIENT) or request.remote or "unknown"


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


# --- the middlewares ---------------------------------------------------------------------


def middlewares(
    settings: Settings, *, public: Collection[str], websockets: Collection[str]
) -> list[Middleware]:
    """The Origin check of WebSocket upgrades, then the API key check, which skips the
    resources whose canonical path (`/healthz`, a static prefix...) is in `public` and takes
    `?token=` only on an upgrade to one of the WebSocket resources in `websockets`."""
    allowed = settings.websocket_origins
    keys = ApiKeys(settings.keys)

    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if (
            origin is not None
            and is_websocket_upgrade(request)
            and not origin_allowed(origin, request.headers.get(hdrs.HOST), allowed)
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
            canonical = None if resource is None else resource.canonical
            token_allowed = canonical in websockets and is_websocket_upgrade(request)
            if canonical not in public:
                request[CLIENT] = authenticate(request, keys, token_allowed=token_allowed)
            elif _presented_key(request, token_allowed) is not None:
                # optional on a public route, where a key shows more (e.g. /readyz's replicas)
                with contextlib.suppress(ApiError):
                    request[CLIENT] = authenticate(request, keys, token_allowed=token_allowed)
        return await handler(request)

    return [check_origin, check_api_key]
