"""The examples of the gateway's OpenAPI document as requests, and its schemas as the judge of
the answers: the scripted-backend and the real-Triton tests send them the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from testsupport.clips import DATA_DIR

Schema = dict[str, Any]


@dataclass(frozen=True)
class Example:
    """One documented request: `name` also names the response example it gets."""

    path: str  # the route, as documented (`/v1/models/{model}`)
    method: str
    name: str
    url: str  # the path with its parameters filled in
    query: dict[str, str] = field(default_factory=dict)
    media_type: str | None = None  # of the body, if any
    body: Any = None  # the request body example's value

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path} {self.name}"


def mime(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def examples(document: Schema) -> Iterator[Example]:
    """Every request example of every operation (one bare request for an operation with none:
    it must get its `200`)."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            bodies = operation.get("requestBody", {}).get("content", {})
            names = {name for p in parameters for name in p.get("examples", {})}
            names |= {name for media in bodies.values() for name in media.get("examples", {})}
            for name in sorted(names) or [""]:
                url, query = path, {}
                for parameter in parameters:
                    if (value := parameter.get("examples", {}).get(name)) is None:
                        continue
                    if parameter["in"] == "path":
                        url = url.replace(f"{{{parameter['name']}}}", value["value"])
                    else:
                        query[parameter["name"]] = _text(value["value"])
                media_type, body = next(
                    (
                        (media_type, media["examples"][name]["value"])
                        for media_type, media in bodies.items()
                        if name in media.get("examples", {})
                    ),
                    (None, None),
                )
                yield Example(path, method, name, url, query, media_type, body)


def request_body(example: Example) -> aiohttp.FormData | bytes | None:
    """A multipart example as a form (`file` names a clip in tests/data), a raw one as bytes."""
    if example.media_type is None:
        return None
    if example.media_type != "multipart/form-data":
        return (DATA_DIR / example.body).read_bytes()
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in example.body.items():
        if name == "file":
            form.add_field("file", (DATA_DIR / value).read_bytes(), filename=value)
            continue
        for item in value if isinstance(value, list) else [value]:
            form.add_field(name, _text(item))
    return form


def expected_response(document: Schema, example: Example) -> tuple[str, str | None]:
    """(status, media type) of the documented response example with the example's name; a
    request without one (a bare request, a file's name) expects a `200`."""
    responses = document["paths"][example.path][example.method]["responses"]
    for status, response in responses.items():
        for media_type, media in response.get("content", {}).items():
            if example.name and example.name in media.get("examples", {}):
                return status, media_type
    return "200", None


def server_sent_events(body: str) -> list[Any]:
    chunks = [chunk for chunk in body.split("\n\n") if chunk]
    assert all(chunk.startswith("data: ") for chunk in chunks), body
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks]


def check_body(document: Schema, schema: Schema, media_type: str, body: bytes) -> None:
    """The body against its documented schema: JSON parsed, an event stream event by event,
    other text as a string; `$ref`s resolve in the document's components."""
    validator = Draft202012Validator({**schema, "components": document["components"]})
    kind = mime(media_type)
    if kind == "application/json":
        validator.validate(json.loads(body))
    elif kind == "text/event-stream":
        for event in server_sent_events(body.decode()):
            validator.validate(event)
    elif schema.get("type") == "string" and kind.startswith("text/"):
        validator.validate(body.decode())


async def check_answer(
    document: Schema, example: Example, response: aiohttp.ClientResponse
) -> None:
    """The answer has the documented status and content type, and its body the schema."""
    status, media_type = expected_response(document, example)
    body = await response.read()
    assert str(response.status) == status, f"{example}: {response.status} {body[:500]!r}"
    content = document["paths"][example.path][example.method]["responses"][status]["content"]
    documented = {mime(key): key for key in content}
    kind = mime(response.headers.get("Content-Type", ""))
    if media_type is not None:
        assert kind == mime(media_type), f"{example}: {kind}, documented {media_type}"
    key = documented.get(kind) or documented.get("*/*")
    assert key is not None, f"{example}: {kind} is not among {sorted(documented)}"
    check_body(document, content[key]["schema"], kind, body)


async def send(session: aiohttp.ClientSession | Any, example: Example) -> Any:
    """The example's request (`session` is an aiohttp session or a test client)."""
    data = request_body(example)
    headers = {}
    if isinstance(data, bytes):
        headers["Content-Type"] = example.media_type
    return await session.request(
        example.method.upper(), example.url, params=example.query, data=data, headers=headers
    )
