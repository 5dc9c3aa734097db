"""Uploads to the gateway and what its errors must look like."""

from __future__ import annotations

from pathlib import Path

import aiohttp


def form(path: Path, **fields: str | list[str]) -> aiohttp.FormData:
    """A multipart upload of the file at `path` with form `fields` (a list repeats a field)."""
    data = aiohttp.FormData()
    data.add_field("file", path.read_bytes(), filename=path.name)
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            data.add_field(name, item)
    return data


async def error_of(response: aiohttp.ClientResponse, status: int) -> str:
    """The message of an error response, after checking its status and JSON shape."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body["error"]) == {"message", "type", "code", "request_id"}
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in body["error"]["message"]
    return body["error"]["message"]
