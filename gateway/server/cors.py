"""CORS for the HTTP API: off (no `Access-Control-*` header at all) unless `cors_origins`
lists the web origins whose pages may call it, or is `*`.

When on, a preflight (`OPTIONS` with `Access-Control-Request-Method`) from a listed origin is
answered here, before any API key is asked for (browsers send none on a preflight), and every
response to a listed origin says so in `Access-Control-Allow-Origin`; that header is added
when the response is prepared, so errors and streamed answers (server-sent events) get it too.
No cookies are involved (the API key travels in `Authorization`), so credentials are not allowed.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from gateway.server.errors import ApiError, Handler
from gateway.server.origins import ANY_ORIGIN, normalise_origin
from gateway.server.request_context import HEADER as REQUEST_ID_HEADER

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = f"Authorization, Content-Type, {REQUEST_ID_HEADER}"  # unless others are asked for
EXPOSED_HEADERS = f"{REQUEST_ID_HEADER}, Retry-After"
PREFLIGHT_MAX_AGE_S = 600


class Cors:
    def __init__(self, origins: frozenset[str]) -> None:
        self.origins = origins

    def allow_origin(self, request: web.BaseRequest) -> str | None:
        """The `Access-Control-Allow-Origin` this request gets, or None for none."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not self.origins:
            return None
        if ANY_ORIGIN in self.origins:
            return ANY_ORIGIN
        return origin if normalise_origin(origin) in self.origins else None

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        is_preflight = (
            request.method == hdrs.METH_OPTIONS
            and hdrs.ORIGIN in request.headers
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        )
        if not self.origins or not is_preflight:
            return await handler(request)
        if self.allow_origin(request) is None:
            raise ApiError(
                403,
                f"cross-origin requests from {request.headers[hdrs.ORIGIN]!r} are not allowed "
                "(cors_origins)",
                "origin_not_allowed",
            )
        # The origin is trusted: it may send whatever headers its client library adds.
        requested = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "").strip()
        return web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: requested or ALLOWED_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
            },
        )

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """`on_response_prepare`: the allowed origin on every response to it."""
        if not self.origins:
            return
        if ANY_ORIGIN not in self.origins:
            response.headers.add(hdrs.VARY, hdrs.ORIGIN)  # the answer depends on who asks
        if (allowed := self.allow_origin(request)) is not None:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allowed
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
