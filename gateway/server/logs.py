"""Logging, set up once at start-up (`configure`): every line carries the request id.

Two formats: `text` for people, and `json` for log collectors, one object per line with
`time`, `level`, `logger`, `message`, `request_id` (`-` outside a request) and, when there is
one, `exception`. The access log (`AccessLogger`) writes paths without their query string: a
browser's WebSocket carries its API key there.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import IO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.server.request_context import REQUEST_ID, current_request_id

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
NO_REQUEST = "-"


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record that does not carry one already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get() or NO_REQUEST
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing `log_format` (`json`, else `text`) lines to `stream` (default stderr)."""
    result = logging.StreamHandler(stream)
    result.addFilter(RequestIdFilter())
    result.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return result


def configure(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    """The root logger writes through one `handler(log_format)` from `level` up; replaces
    whatever was configured before."""
    logging.basicConfig(level=level.upper(), handlers=[handler(log_format, stream)], force=True)


class AccessLogger(AbstractAccessLogger):
    """One line per request: peer, method, path (never the query), status, bytes, seconds."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
            # logged after the request's own context has been left: the id comes from the request
            extra={"request_id": request.get(REQUEST_ID, NO_REQUEST)},
        )
