"""Read an uploaded file from a multipart form (field `file`) or a raw body, with caps.

The size cap is enforced while reading: a declared Content-Length above it is refused before
any of the body is read, and an undeclared one is cut off as soon as it passes the cap. A form
may have at most `MAX_FORM_PARTS` parts, its other fields `MAX_FIELD_BYTES` each and
`MAX_FIELDS_BYTES` together, and the whole body must arrive within the read timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from multidict import MultiDict, MultiDictProxy

from gateway.server.errors import ApiError

MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries and the small form fields around the file
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS_BYTES = 256 * 1024  # all fields but the file together
MAX_FORM_PARTS = 64  # OpenAI's form has a dozen fields; a few repeat (timestamp_granularities[])
_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None
    fields: MultiDictProxy[str] = field(default_factory=lambda: MultiDictProxy(MultiDict()))


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the upload is larger than the limit of {limit / 1024 / 1024:.3g} MB",
        "file_too_large",
    )


async def _read_capped(
    read_chunk: Callable[[int], Awaitable[bytes]], limit: int, error: ApiError
) -> bytes:
    chunks, size = [], 0
    while chunk := await read_chunk(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise error
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: web.Request, limit: int, timeout_s: float) -> Upload:
    """The upload of at most `limit` bytes, read within `timeout_s` (408 after)."""
    declared = request.content_length
    if declared is not None and declared > limit + MULTIPART_OVERHEAD_BYTES:
        raise too_large(limit)
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_upload(request, limit)
    except TimeoutError:
        raise ApiError(
            408, f"the upload did not arrive within {timeout_s:g} s", "upload_timeout"
        ) from None


async def _read_upload(request: web.Request, limit: int) -> Upload:
    fields: MultiDict[str] = MultiDict(request.query)
    if request.content_type != "multipart/form-data":
        data = await _read_capped(request.content.read, limit, too_large(limit))
        return Upload(data, None, request.content_type or None, MultiDictProxy(fields))
    upload: Upload | None = None
    reader = await request.multipart()
    parts, fields_bytes = 0, 0
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > MAX_FORM_PARTS:
            raise ApiError(400, f"the form has more than {MAX_FORM_PARTS} parts", "too_many_fields")
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "file":
            data = await _read_capped(part.read_chunk, limit, too_large(limit))
            upload = Upload(data, part.filename, part.headers.get("Content-Type"))
        else:
            field_too_large = ApiError(
                400,
                f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes",
                "field_too_large",
            )
            value = await _read_capped(part.read_chunk, MAX_FIELD_BYTES, field_too_large)
            fields_bytes += len(value)
            if fields_bytes > MAX_FIELDS_BYTES:
                raise ApiError(
                    413,
                    f"the form's fields add up to more than {MAX_FIELDS_BYTES} bytes",
                    "fields_too_large",
                )
            fields.add(part.name, value.decode("utf-8", "replace"))
    if upload is None:
        raise ApiError(400, "the multipart form has no 'file' field", "missing_file")
    return Upload(upload.data, upload.filename, upload.content_type, MultiDictProxy(fields))
