"""The request id: one per HTTP request or WebSocket session, so that what a client reports
and what the gateway logged can be matched.

An incoming `X-Request-Id` (set by a proxy or the client) is kept, cleaned of anything but
plain characters and cut to `MAX_LENGTH`; without one the gateway makes one. It is answered in
the `X-Request-Id` header of every response (WebSocket handshakes and streamed answers
included), put in every error body, and held in a ContextVar for the request's task and the
tasks it starts, from which `gateway.server.logs` puts it on every log record.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from aiohttp import web

HEADER = "X-Request-Id"
MAX_LENGTH = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/+=@-]")

REQUEST_ID = web.RequestKey("request_id", str)
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def clean_request_id(incoming: str | None) -> str:
    """`incoming` without unsafe characters (no spaces, quotes or control characters reach a
    log line or a header) and at most MAX_LENGTH long; a new id when nothing usable is left."""
    cleaned = _UNSAFE.sub("", incoming or "")[:MAX_LENGTH]
    return cleaned or uuid.uuid4().hex


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request[REQUEST_ID] = request_id = clean_request_id(request.headers.get(HEADER))
    token = current_request_id.set(request_id)
    try:
        return await handler(request)
    finally:
        current_request_id.reset(token)


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: runs just before any response's headers go out, so responses
    that are prepared inside the handler (WebSocket, server-sent events) carry it too."""
    if (request_id := request.get(REQUEST_ID)) is not None:
        response.headers[HEADER] = request_id
