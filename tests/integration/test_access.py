"""Access control and limits through the real gateway (and the real Triton where a request
reaches the model): API keys, WebSocket origins, CORS, per-client streams, request ids, logs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
from dataclasses import replace

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from gateway.server.app import SERVER_OPTIONS, create_app
from gateway.server.keys import STREAMS
from gateway.server.logs import AccessLogger, RequestIdFilter, handler
from gateway.server.settings import Settings
from testsupport.clips import JFK_TEXT
from testsupport.http import form
from testsupport.streams import pcm16
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration

KEY = "hk-test-4d1c9b7e0a"
OTHER_KEY = "hk-test-other-77f2"
TRANSCRIPTION_ROUTES = ["/transcribe", "/upload", "/v1/audio/transcriptions"]
APP_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def gateway_with(make_gateway, gateway_settings: Settings):
    """A gateway with these settings changed."""

    async def start(**changes):
        return await make_gateway(replace(gateway_settings, **changes))

    return start


@pytest.fixture
async def secured(gateway_with):
    return await gateway_with(api_keys=f"{KEY},{OTHER_KEY}")


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict:
    """The OpenAI-shaped error body, checked to carry the response's request id."""
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "code", "request_id"}
    assert error["request_id"] == response.headers["X-Request-Id"]
    return error


async def finish(ws: aiohttp.ClientWebSocketResponse, audio: bytes = b"") -> tuple[str, list[dict]]:
    """Send `audio` in 100 ms frames and `stop`; the finals' text and every message to `done`."""
    for offset in range(0, len(audio), 3200):
        await ws.send_bytes(audio[offset : offset + 3200])
    await ws.send_json({"type": "stop"})
    messages = []
    while not messages or messages[-1]["type"] != "done":
        messages.append(await ws.receive_json(timeout=120))
    return "".join(m["text"] for m in messages if m["type"] == "final"), messages


def upgrade_headers(**extra: str) -> dict[str, str]:
    """A WebSocket upgrade by hand, to read the body of a refusal."""
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


# --- API keys on HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize("route", TRANSCRIPTION_ROUTES)
@pytest.mark.parametrize(
    ("headers", "query", "message"),
    [
        ({}, "", "no API key"),
        (bearer("hk-test-wrong"), "", "invalid API key"),
        (bearer(KEY[:-1]), "", "invalid API key"),
        ({"Authorization": f"Basic {KEY}"}, "", "invalid API key"),
        ({}, f"?token={KEY}", "no API key"),  # the query token is for WebSockets only
    ],
)
async def test_http_routes_need_a_valid_key(secured, route, headers, query, message) -> None:
    reply = await secured.post(route + query, data=b"RIFF", headers=headers)
    error = await error_of(reply, 401)
    assert message in error["message"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert KEY not in await reply.text()


async def test_the_right_key_transcribes_jfk(secured, clips) -> None:
    reply = await secured.post(
        "/transcribe", data=form(clips["jfk.flac"].path), headers=bearer(OTHER_KEY)
    )
    assert reply.status == 200, await reply.text()
    assert word_error_rate(JFK_TEXT, (await reply.json())["text"]) == 0.0


async def test_openai_client_with_the_right_key_and_a_wrong_one(secured, clips) -> None:
    path = clips["jfk.flac"].path
    right = AsyncOpenAI(base_url=str(secured.make_url("/v1")), api_key=KEY)
    transcription = await right.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
    assert word_error_rate(JFK_TEXT, transcription.text) == 0.0

    wrong = AsyncOpenAI(
        base_url=str(secured.make_url("/v1")), api_key="hk-test-wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as refused:
        await wrong.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert refused.value.request_id and refused.value.request_id == refused.value.body["request_id"]


async def test_probes_and_the_live_page_need_no_key(secured) -> None:
    for path in ["/healthz", "/readyz", "/", "/static/app.js"]:
        reply = await secured.get(path)
        assert reply.status == 200, (path, await reply.text())
    assert (await error_of(await secured.get("/no-such-route"), 401))["code"] == "invalid_api_key"


async def test_keys_from_a_mounted_file(gateway_with, clips, tmp_path) -> None:
    key_file = tmp_path / "api-keys"
    key_file.write_text(f"# production keys\n{KEY}\n")
    gateway = await gateway_with(api_keys_file=str(key_file))
    await error_of(await gateway.post("/transcribe", data=b"RIFF", headers=bearer(OTHER_KEY)), 401)
    reply = await gateway.post(
        "/transcribe", data=form(clips["jfk.flac"].path), headers=bearer(KEY)
    )
    assert word_error_rate(JFK_TEXT, (await reply.json())["text"]) == 0.0


# --- API keys on the WebSocket ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/stream-audio", {}),
        ("/stream-audio", bearer("hk-test-wrong")),
        ("/stream-audio?token=hk-test-wrong", {}),
        ("/stream-audio?token=", {}),
        (f"/stream-audio?token={KEY}", bearer("hk-test-wrong")),  # the header is the one read
    ],
)
async def test_websocket_without_a_valid_key_is_refused_before_the_upgrade(
    secured, path, headers
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await secured.ws_connect(path, headers=headers)
    assert refused.value.status == 401


async def test_websocket_refusal_says_why_in_json(secured) -> None:
    reply = await secured.get("/stream-audio", headers=upgrade_headers())
    error = await error_of(reply, 401)
    assert "?token=<key>" in error["message"] and reply.headers["WWW-Authenticate"].startswith(
        "Bearer"
    )


async def test_websocket_with_the_key_in_the_query_streams_jfk(secured, clips) -> None:
    async with secured.ws_connect(f"/stream-audio?token={KEY}") as ws:
        text, _ = await finish(ws, pcm16(clips["jfk.flac"].audio))
    assert word_error_rate(JFK_TEXT, text) == 0.0, text


async def test_websocket_with_the_key_in_the_header(secured) -> None:
    async with secured.ws_connect("/stream-audio", headers=bearer(OTHER_KEY)) as ws:
        _, messages = await finish(ws)
    assert messages == [{"type": "done"}]


# --- Origins of WebSocket upgrades ---------------------------------------------------------


async def test_same_origin_pages_and_non_browsers_may_connect_by_default(gateway) -> None:
    own_origin = f"http://{gateway.host}:{gateway.port}"
    for headers in [{"Origin": own_origin}, {}]:
        async with gateway.ws_connect("/stream-audio", headers=headers) as ws:
            assert (await finish(ws))[1] == [{"type": "done"}]


async def test_pages_of_other_origins_are_refused_with_403(gateway) -> None:
    for origin in [EVIL_ORIGIN, f"http://{gateway.host}:{gateway.port + 1}", "null"]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await gateway.ws_connect("/stream-audio", headers={"Origin": origin})
        assert refused.value.status == 403
    error = await error_of(
        await gateway.get("/stream-audio", headers=upgrade_headers(Origin=EVIL_ORIGIN)), 403
    )
    assert error["code"] == "origin_not_allowed"
    assert (
        "'https://evil.example' are not allowed" in error["message"]
        and "allowed_origins" in error["message"]
    )


async def test_listed_origins_are_allowed_besides_the_gateways_own(gateway_with) -> None:
    gateway = await gateway_with(allowed_origins=APP_ORIGIN)
    for origin in [APP_ORIGIN, f"http://{gateway.host}:{gateway.port}"]:
        async with gateway.ws_connect("/stream-audio", headers={"Origin": origin}) as ws:
            assert (await finish(ws))[1] == [{"type": "done"}]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.ws_connect("/stream-audio", headers={"Origin": EVIL_ORIGIN})
    assert refused.value.status == 403


async def test_a_star_allows_every_origin(gateway_with) -> None:
    gateway = await gateway_with(allowed_origins="*")
    async with gateway.ws_connect("/stream-audio", headers={"Origin": EVIL_ORIGIN}) as ws:
        assert (await finish(ws))[1] == [{"type": "done"}]


async def test_the_origin_is_checked_even_with_a_valid_key(secured) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await secured.ws_connect(f"/stream-audio?token={KEY}", headers={"Origin": EVIL_ORIGIN})
    assert refused.value.status == 403


# --- CORS ----------------------------------------------------------------------------------


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def cors_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


async def test_no_cors_headers_unless_configured(gateway) -> None:
    preflight = await gateway.options(
        "/v1/audio/transcriptions", headers=preflight_headers(APP_ORIGIN)
    )
    assert preflight.status == 405 and cors_headers(preflight) == {}
    reply = await gateway.get("/healthz", headers={"Origin": APP_ORIGIN})
    assert reply.status == 200 and cors_headers(reply) == {}


async def test_cors_for_a_listed_origin(gateway_with, clips) -> None:
    gateway = await gateway_with(cors_origins=APP_ORIGIN, api_keys=KEY)
    preflight = await gateway.options(
        "/v1/audio/transcriptions", headers=preflight_headers(APP_ORIGIN)
    )
    assert preflight.status == 204  # answered without a key: browsers send none on a preflight
    assert preflight.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert int(preflight.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in preflight.headers.getall("Vary")

    reply = await gateway.post(
        "/v1/audio/transcriptions",
        data=form(clips["jfk.flac"].path),
        headers={"Origin": APP_ORIGIN, **bearer(KEY)},
    )
    assert reply.status == 200 and reply.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "X-Request-Id" in reply.headers["Access-Control-Expose-Headers"]
    assert word_error_rate(JFK_TEXT, (await reply.json())["text"]) == 0.0
    # errors too, so that the page can read why
    refused = await gateway.post(
        "/v1/audio/transcriptions", data=b"RIFF", headers={"Origin": APP_ORIGIN}
    )
    await error_of(refused, 401)
    assert refused.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


async def test_cors_refuses_other_origins(gateway_with) -> None:
    gateway = await gateway_with(cors_origins=APP_ORIGIN)
    preflight = await gateway.options(
        "/v1/audio/transcriptions", headers=preflight_headers(EVIL_ORIGIN)
    )
    assert (await error_of(preflight, 403))["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in preflight.headers
    reply = await gateway.get("/healthz", headers={"Origin": EVIL_ORIGIN})
    assert reply.status == 200 and "Access-Control-Allow-Origin" not in reply.headers


async def test_cors_for_any_origin(gateway_with) -> None:
    gateway = await gateway_with(cors_origins="*")
    preflight = await gateway.options("/transcribe", headers=preflight_headers(EVIL_ORIGIN))
    assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    reply = await gateway.get("/healthz", headers={"Origin": EVIL_ORIGIN})
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


# --- Streams per client --------------------------------------------------------------------


async def refused_reason(ws: aiohttp.ClientWebSocketResponse) -> str:
    message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1013, message
    return message.extra


async def test_streams_per_api_key(gateway_with, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    caplog.handler.addFilter(RequestIdFilter())
    gateway = await gateway_with(
        api_keys=f"{KEY},{OTHER_KEY}", max_streams=4, max_streams_per_client=1
    )
    first = await gateway.ws_connect("/stream-audio", headers=bearer(KEY))
    second = await gateway.ws_connect(
        "/stream-audio", headers={**bearer(KEY), "X-Request-Id": "second-of-key-1"}
    )
    assert "too many streams from this client: the limit is 1" in await refused_reason(second)
    refusals = [r for r in caplog.records if r.getMessage().startswith("stream refused for key #1")]
    assert [r.request_id for r in refusals] == ["second-of-key-1"]
    async with gateway.ws_connect("/stream-audio", headers=bearer(OTHER_KEY)) as other:
        assert (await finish(other))[1] == [{"type": "done"}]
    await first.close()  # its slot is released: the key may open another
    for _ in range(50):
        if not gateway.server.app[STREAMS]:
            break
        await asyncio.sleep(0.1)
    async with gateway.ws_connect("/stream-audio", headers=bearer(KEY)) as again:
        assert (await finish(again))[1] == [{"type": "done"}]


async def test_streams_per_address_without_keys(gateway_with) -> None:
    gateway = await gateway_with(max_streams=4, max_streams_per_client=2)
    open_streams = [await gateway.ws_connect("/stream-audio") for _ in range(2)]
    third = await gateway.ws_connect("/stream-audio")
    assert "too many streams from this client: the limit is 2" in await refused_reason(third)
    for ws in open_streams:
        await ws.close()


# --- Request ids and logs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "answered"),
    [("trace-abc-123", "trace-abc-123"), ("bad id <x>\t", "badidx"), ("z" * 500, "z" * 128)],
)
async def test_request_ids_are_echoed_cleaned(gateway, sent, answered) -> None:
    reply = await gateway.get("/healthz", headers={"X-Request-Id": sent})
    assert reply.headers["X-Request-Id"] == answered


async def test_request_ids_are_made_when_missing_and_are_in_error_bodies(gateway) -> None:
    made = {(await gateway.get("/healthz")).headers["X-Request-Id"] for _ in range(3)}
    assert len(made) == 3 and all(len(value) == 32 for value in made)
    error = await error_of(await gateway.get("/nope", headers={"X-Request-Id": "trace-404"}), 404)
    assert error["request_id"] == "trace-404"


async def test_request_id_in_log_records_and_websocket_errors(gateway, clips, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    caplog.handler.addFilter(RequestIdFilter())
    reply = await gateway.post(
        "/v1/audio/transcriptions",
        headers={"X-Request-Id": "trace-400"},
        data=form(clips["jfk.flac"].path, response_format="docx"),
    )
    assert (await error_of(reply, 400))["request_id"] == "trace-400"
    logged = [r for r in caplog.records if "-> 400" in r.getMessage()]
    assert logged and all(r.request_id == "trace-400" for r in logged)

    async with gateway.ws_connect("/stream-audio", headers={"X-Request-Id": "ws-trace-1"}) as ws:
        await ws.send_str("not json")
        error = await ws.receive_json(timeout=10)
        assert error["type"] == "error" and error["request_id"] == "ws-trace-1"
        await finish(ws)
    outside = [r for r in caplog.records if r.request_id not in ("trace-400", "ws-trace-1")]
    assert all(r.request_id == "-" for r in outside), [
        (r.request_id, r.getMessage()) for r in outside
    ]


async def test_json_logs_carry_request_ids_and_never_a_key(
    aiohttp_client, gateway_settings, caplog
) -> None:
    """The gateway as `hermes serve` runs it (its access logger), logging JSON to a stream."""
    caplog.set_level(logging.INFO)
    server = TestServer(create_app(replace(gateway_settings, api_keys=KEY)), **SERVER_OPTIONS)
    await server.start_server(access_log_class=AccessLogger)
    gateway = await aiohttp_client(server)
    output = io.StringIO()
    json_handler = handler("json", output)
    logging.getLogger().addHandler(json_handler)
    try:
        refused = await gateway.post(
            "/transcribe",
            data=b"RIFF",
            headers={**bearer("hk-test-wrong"), "X-Request-Id": "json-401"},
        )
        assert refused.status == 401
        async with gateway.ws_connect(
            f"/stream-audio?token={KEY}", headers={"X-Request-Id": "json-ws"}
        ) as ws:
            await finish(ws)
        for _ in range(50):  # the access line of a WebSocket comes once its handler has returned
            if '"GET /stream-audio" 101' in output.getvalue():
                break
            await asyncio.sleep(0.1)
    finally:
        logging.getLogger().removeHandler(json_handler)
    entries = [json.loads(line) for line in output.getvalue().splitlines()]
    assert entries and all(
        {"time", "level", "logger", "message", "request_id"} <= set(e) for e in entries
    )
    by_id = {e["request_id"]: e["message"] for e in entries if e["logger"] == "aiohttp.access"}
    assert '"POST /transcribe" 401' in by_id["json-401"]
    assert '"GET /stream-audio" 101' in by_id["json-ws"]
    assert any(e["request_id"] == "json-401" and "invalid API key" in e["message"] for e in entries)
    assert KEY not in output.getvalue() and "token=" not in output.getvalue()
