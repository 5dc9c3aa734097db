"""Errors as clients see them: JSON in OpenAI's shape, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import hdrs, web

from gateway.server.request_context import current_request_id

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 tells a client to wait before trying again

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error with the HTTP status and machine-readable code the client gets."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param  # the request field at fault, as OpenAI names it
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return "server_error" if self.status >= 500 else "invalid_request_error"

    def body(self) -> dict[str, dict[str, str]]:
        """OpenAI's error shape, plus the request's id (when in one) to quote in a report."""
        error = {"message": self.message, "type": self.type, "code": self.code}
        if self.param is not None:
            error["param"] = self.param
        if (request_id := current_request_id.get()) is not None:
            error["request_id"] = request_id
        return {"error": error}

    def response(self) -> web.Response:
        headers = dict(self.headers)
        if self.retry_after:
            headers["Retry-After"] = str(self.retry_after)
        return web.json_response(self.body(), status=self.status, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "file_too_large"}
    allow: dict[str, str] | None = (
        {hdrs.ALLOW: exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else None
    )
    return ApiError(
        exc.status,
        exc.reason if exc.text is None else exc.text.strip(),
        codes.get(exc.status, "http_error"),
        headers=allow,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        logger.info("%s %s -> %d %s", request.method, request.path, exc.status, exc.message)
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc).response()
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return ApiError(500, "internal error; see the gateway log", "internal_error").response()
