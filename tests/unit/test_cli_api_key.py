"""`hermes transcribe` and `hermes stream` with API keys: `--api-key` or `HERMES_API_KEY`,
sent as `Authorization: Bearer` (the WebSocket handshake too), against stand-ins that ask for
the key as the gateway does; without one, the error says how to give it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from gateway.tools import stream_client, transcribe_client

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the loop pytest-aiohttp's fixtures use

KEY = "hk-cli-test-key"
DONE = {
    "type": "done",
    "transcript": {"text": "Ask not.", "language": "en", "duration": 1.0, "segments": []},
}


def unauthorized(request: web.Request) -> web.Response | None:
    """The gateway's 401 when the request lacks the key, else None."""
    if request.headers.get("Authorization") == f"Bearer {KEY}":
        return None
    body = {"error": {"message": "invalid API key", "type": "invalid_request_error"}}
    return web.json_response(body, status=401)


class StandIn:
    def __init__(self, aiohttp_server: AiohttpServer) -> None:
        self.aiohttp_server = aiohttp_server
        self.authorizations: list[str | None] = []

    async def start(self) -> str:
        async def transcribe(request: web.Request) -> web.StreamResponse:
            self.authorizations.append(request.headers.get("Authorization"))
            await request.read()
            if (refusal := unauthorized(request)) is not None:
                return refusal
            return web.Response(
                body=f"data: {json.dumps(DONE)}\n\n", content_type="text/event-stream"
            )

        async def stream_audio(request: web.Request) -> web.StreamResponse:
            self.authorizations.append(request.headers.get("Authorization"))
            if (refusal := unauthorized(request)) is not None:
                return refusal
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                if (
                    message.type is web.WSMsgType.TEXT
                    and json.loads(message.data)["type"] == "stop"
                ):
                    await ws.send_json({"type": "final", "text": " Ask not.", "start": 0, "end": 1})
                    await ws.send_json({"type": "done"})
                    await ws.close()
            return ws

        app = web.Application()
        app.router.add_post("/transcribe", transcribe)
        app.router.add_get("/stream-audio", stream_audio)
        return str((await self.aiohttp_server(app)).make_url(""))


@pytest.fixture
def gateway(aiohttp_server: AiohttpServer) -> StandIn:
    return StandIn(aiohttp_server)


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERMES_API_KEY", raising=False)


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Half a second of quiet noise, as a WAV file."""
    path = tmp_path_factory.mktemp("audio") / "quiet.wav"
    noise = np.random.default_rng(0).normal(0, 0.01, 8000).astype(np.float32)
    soundfile.write(path, noise, 16000)
    return path


async def transcribe(audio: Path, *argv: str) -> int:
    return await transcribe_client.run(transcribe_client.parse_args([str(audio), *argv]))


async def stream(audio: Path, url: str, *argv: str) -> int:
    ws_url = url.replace("http://", "ws://").rstrip("/") + "/stream-audio"
    return await stream_client.run(
        stream_client.parse_args([str(audio), "--url", ws_url, "--fast", *argv])
    )


async def test_transcribe_sends_the_key_of_the_flag(gateway, audio, capsys) -> None:
    url = await gateway.start()
    assert await transcribe(audio, "--url", url, "--api-key", KEY) == 0
    assert gateway.authorizations == [f"Bearer {KEY}"]
    assert capsys.readouterr().out == "Ask not.\n"


async def test_transcribe_takes_the_key_from_the_environment(gateway, audio, monkeypatch) -> None:
    url = await gateway.start()
    monkeypatch.setenv("HERMES_API_KEY", KEY)
    assert await transcribe(audio, "--url", url) == 0
    assert await transcribe(audio, "--url", url, "--api-key", "hk-the-flag-wins") == 1
    assert gateway.authorizations == [f"Bearer {KEY}", "Bearer hk-the-flag-wins"]


async def test_transcribe_without_a_key_says_how_to_give_one(gateway, audio, capsys) -> None:
    url = await gateway.start()
    assert await transcribe(audio, "--url", url) == 1
    assert gateway.authorizations == [None]
    assert capsys.readouterr().err == (
        "error: invalid API key (HTTP 401); "
        "give the gateway's API key with --api-key or HERMES_API_KEY\n"
    )


async def test_stream_sends_the_key_on_the_handshake(gateway, audio, capsys, monkeypatch) -> None:
    url = await gateway.start()
    assert await stream(audio, url, "--api-key", KEY) == 0
    monkeypatch.setenv("HERMES_API_KEY", KEY)
    assert await stream(audio, url) == 0
    assert gateway.authorizations == [f"Bearer {KEY}"] * 2
    assert capsys.readouterr().out == "Ask not.\nAsk not.\n"


async def test_stream_without_a_key_says_how_to_give_one(gateway, audio, capsys) -> None:
    url = await gateway.start()
    assert await stream(audio, url) == 1
    assert gateway.authorizations == [None]
    err = capsys.readouterr().err
    assert "refused the stream (HTTP 401" in err
    assert err.endswith("; give the gateway's API key with --api-key or HERMES_API_KEY\n")


@pytest.mark.parametrize("key", ["two words", "line\nbreak", "clé"])
async def test_a_key_that_cannot_go_in_a_header_is_a_usage_error(key, audio, capsys) -> None:
    for parse in (transcribe_client.parse_args, stream_client.parse_args):
        with pytest.raises(SystemExit) as exited:
            parse([str(audio), "--api-key", key])
        assert exited.value.code == 2
        assert "the API key must be printable ASCII without spaces" in capsys.readouterr().err
