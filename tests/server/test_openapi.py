"""The API's documents against the code, with the scripted backend: `/openapi.json` is valid
OpenAPI 3.1, names every HTTP route of the router and nothing else (the WebSockets are in
`/asyncapi.json`), the form fields the parsers read, and every documented example sent to the
gateway gets the documented status, content type and a body its schema describes; `/docs`
serves Swagger UI from its package, with keys on too; and a session on each WebSocket speaks,
both ways, as `/asyncapi.json` says."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import soxr
from aiohttp import web
from jsonschema import Draft202012Validator, validators
from multidict import MultiDict
from openapi_spec_validator import validate

from gateway.modes.stream_input import StreamConfig
from gateway.server import asyncapi, openapi
from gateway.server.app import PUBLIC_RESOURCES, WEBSOCKET_RESOURCES, create_app
from gateway.server.http_files import (
    FileRequest,
    native_request,
    openai_request,
    translation_request,
)
from testsupport.clips import DATA_DIR
from testsupport.openapi import check_answer, check_body, examples, mime, send, server_sent_events
from testsupport.scripted_backend import ScriptedBackend
from testsupport.streams import pcm16

from .conftest import SETTINGS

KEY = "hk-docs-test-1"
COMPLETED = "conversation.item.input_audio_transcription.completed"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document(PUBLIC_RESOURCES)


def routes(app: web.Application) -> dict[str, set[str]]:
    """The router's routes: canonical path -> methods (HEAD comes with every GET)."""
    table: dict[str, set[str]] = {}
    for route in app.router.routes():
        if route.method != "HEAD":
            table.setdefault(route.resource.canonical, set()).add(route.method.lower())
    return table


async def test_the_served_document_is_valid_openapi_3_1(client, document) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    served = await response.json()
    validate(served)
    assert served["openapi"] == "3.1.0"
    assert served == json.loads(json.dumps(document))


async def test_the_served_asyncapi_document_is_valid_asyncapi_3(client) -> None:
    """Against AsyncAPI's own JSON Schema (tests/data/asyncapi/README.md)."""
    response = await client.get("/asyncapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    served = await response.json()
    schema = json.loads(gzip.decompress((DATA_DIR / "asyncapi" / "3.0.0.json.gz").read_bytes()))
    validators.validator_for(schema)(schema).validate(served)
    assert served["asyncapi"] == "3.0.0"
    assert served == json.loads(json.dumps(asyncapi.document()))


def test_every_route_is_documented_and_nothing_else(document) -> None:
    app = create_app(SETTINGS, backend=ScriptedBackend())
    table = routes(app)
    websockets = {path: table.pop(path) for path in WEBSOCKET_RESOURCES}
    assert table == {path: set(operations) for path, operations in document["paths"].items()}
    assert websockets == {path: {"get"} for path in WEBSOCKET_RESOURCES}
    addresses = {channel["address"] for channel in asyncapi.document()["channels"].values()}
    assert addresses == WEBSOCKET_RESOURCES


def test_security_says_which_routes_need_a_key(document) -> None:
    for path, operations in document["paths"].items():
        for operation in operations.values():
            optional = {} in operation["security"]
            assert optional == (path in PUBLIC_RESOURCES), path
            assert {openapi.SECURITY_SCHEME: []} in operation["security"], path


class ReadFields:
    """Form fields that remember which names a parser asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = MultiDict(values)
        self.asked: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        self.asked.add(name)
        return self.values.get(name, default)

    def getall(self, name: str, default: Any = ()) -> Any:
        self.asked.add(name)
        return self.values.getall(name, default)

    def items(self) -> Any:
        return self.values.items()


def asked_by(parse: Callable[[Any], FileRequest], *variants: dict[str, str]) -> set[str]:
    """Every field `parse` reads, over forms that take each of its branches."""
    asked: set[str] = set()
    for values in variants:
        fields = ReadFields(values)
        parse(fields)
        asked |= fields.asked
    return asked


def documented_options(document: dict[str, Any], path: str) -> set[str]:
    """The documented form fields but `file` and query parameters, each `name[]` also as
    `name` (both are read)."""
    operation = document["paths"][path]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    names = set(form["properties"]) - {"file"}
    names |= {parameter["name"] for parameter in operation.get("parameters", [])}
    return names | {name.removesuffix("[]") for name in names}


@pytest.mark.parametrize(
    ("path", "parse", "variants"),
    [
        (
            "/v1/audio/transcriptions",
            openai_request,
            [{}, {"response_format": "diarized_json"}, {"response_format": "srt", "diarize": "1"}],
        ),
        (
            "/v1/audio/translations",
            translation_request,
            [{}, {"response_format": "vtt", "diarize": "true"}],
        ),
        ("/transcribe", native_request, [{}, {"diarize": "true"}]),
        ("/upload", native_request, [{}, {"diarize": "true"}]),
    ],
)
def test_the_options_are_those_the_parser_reads(document, path, parse, variants) -> None:
    assert asked_by(parse, *variants) == documented_options(document, path)


def test_every_documented_response_example_fits_its_schema(document) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                for media_type, media in response.get("content", {}).items():
                    for name, item in media.get("examples", {}).items():
                        value = item["value"]
                        body = value.encode() if isinstance(value, str) else json.dumps(value)
                        try:
                            check_body(document, media["schema"], media_type, body)
                        except Exception as exc:
                            raise AssertionError(f"{method} {path} {status} {name}") from exc


@pytest.mark.parametrize("example", list(examples(openapi.document(PUBLIC_RESOURCES))), ids=str)
async def test_every_example_gets_the_documented_answer(make_client, document, example) -> None:
    # multilingual weights, so that translations translate
    client = await make_client(ScriptedBackend(weights="base"))
    await check_answer(document, example, await send(client, example))


async def test_docs_page_and_documents_are_public_with_keys_on(make_client) -> None:
    client = await make_client(api_keys=KEY)
    for path in ("/docs", "/docs/swagger-ui-bundle.js", "/docs/docs.js", "/openapi.json"):
        response = await client.get(path)
        assert response.status == 200, path
    page = await (await client.get("/docs")).text()
    assert 'src="docs/swagger-ui-bundle.js"' in page and "http" not in page.replace(
        "http-equiv", ""
    )
    assert (await client.get("/v1/models")).status == 401
    authorized = await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert authorized.status == 200
    for name in ("index.j2", "..%2Fswagger-ui.css", "docs.html"):
        response = await client.get(f"/docs/{name}")
        assert response.status == 404 and mime(response.headers["Content-Type"]) == (
            "application/json"
        )


def check_message(channel: str, direction: str, message: dict[str, Any]) -> None:
    """`message` fits the AsyncAPI payload of its type on that channel, that way."""
    messages = asyncapi.document()["components"]["messages"]
    payload = messages[f"{channel}.{direction}.{message['type']}"]["payload"]
    Draft202012Validator(payload).validate(message)


def test_every_asyncapi_reference_resolves() -> None:
    document = asyncapi.document()
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        for message in operation["messages"]:
            key = message["$ref"].removeprefix(f"#/channels/{channel}/messages/")
            reference = document["channels"][channel]["messages"][key]["$ref"]
            assert (
                reference.removeprefix("#/components/messages/")
                in document["components"]["messages"]
            )


async def test_a_stream_speaks_as_the_asyncapi_document_says(client, jfk_audio) -> None:
    """A /stream-audio session's messages, both ways, each fit the documented payload of its
    type."""
    config = {"type": "config", "sample_rate": 16000, "speech_events": True, "diarize": True}
    check_message("streamAudio", "client", config)
    check_message("streamAudio", "client", {"type": "stop"})
    audio = pcm16(jfk_audio)
    received = []
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json(config)
        await ws.send_json({"type": "bogus"})  # an error, and the session goes on
        for start in range(0, len(audio), 32000):
            await ws.send_bytes(audio[start : start + 32000])
            await asyncio.sleep(0.01)
        await ws.send_json({"type": "stop"})
        async for message in ws:
            received.append(json.loads(message.data))
    for message in received:
        check_message("streamAudio", "server", message)
    assert {"error", "final", "speech_started", "done"} <= {m["type"] for m in received}
    assert all("speaker" in m for m in received if m["type"] == "final")


async def test_a_realtime_session_speaks_as_the_asyncapi_document_says(client, jfk_audio) -> None:
    """A Realtime transcription session's events, both ways, each fit the documented payload
    of its type: one turn ended by the voice detector, and a refused event."""
    speech = soxr.resample(np.concatenate([jfk_audio, np.zeros(24_000)]), 16_000, 24_000)
    update = {"type": "session.update", "session": {"type": "transcription"}}
    sent = [update, {"type": "input_audio_buffer.clear"}, {"type": "bogus.event"}]
    sent += [
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16(chunk)).decode()}
        for chunk in np.array_split(speech, 50)
    ]
    received = []
    async with client.ws_connect("/v1/realtime?intent=transcription") as ws:
        for event in sent:
            if event["type"] != "bogus.event":
                check_message("realtime", "client", event)
            await ws.send_json(event)
        while not received or received[-1]["type"] != COMPLETED:
            received.append(await ws.receive_json(timeout=30))
    for event in received:
        check_message("realtime", "server", event)
    kinds = {event["type"] for event in received}
    assert {"session.created", "session.updated", "error", "input_audio_buffer.committed"} <= kinds


def test_the_stream_config_is_documented_field_by_field() -> None:
    config = asyncapi.document()["components"]["messages"]["streamAudio.client.config"]
    documented = set(config["payload"]["properties"]) - {"type"}
    assert documented == {field.name for field in dataclasses.fields(StreamConfig)}


def test_event_stream_examples_are_events(document) -> None:
    content = document["paths"]["/transcribe"]["post"]["responses"]["200"]["content"]
    events = server_sent_events(content["text/event-stream"]["examples"]["jfk_progress"]["value"])
    assert [event["type"] for event in events][-1] == "done"
