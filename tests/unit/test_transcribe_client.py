"""`hermes transcribe`: protocol tests of the client.

A stand-in route replays canned server-sent-event bytes, so these check only what the client
sends, how it parses the stream and what it prints; the real gateway is the integration tests'.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from gateway.core.transcript import Transcript
from gateway.server import formats
from gateway.tools import transcribe_client
from gateway.tools.transcribe_client import iter_sse_events

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the loop pytest-aiohttp's fixtures use


def words(*items: tuple[str, float, float]) -> list[dict[str, Any]]:
    return [{"word": w, "start": a, "end": b, "probability": 0.9} for w, a, b in items]


# The `transcript` of a done event, as the gateway writes it (`Transcript.to_json()`).
WIRE_TRANSCRIPT = {
    "text": " Hello world. Goodbye.",
    "language": "en",
    "duration": 4.0,
    "segments": [
        {
            "id": 0,
            "start": 0.0,
            "end": 1.5,
            "text": " Hello world.",
            "tokens": [1, 2],
            "temperature": 0.0,
            "avg_logprob": -0.2,
            "compression_ratio": 1.1,
            "no_speech_prob": 0.01,
            "words": words((" Hello", 0.0, 0.5), (" world.", 0.6, 1.5)),
        },
        {
            "id": 1,
            "start": 2.0,
            "end": 4.0,
            "text": " Goodbye.",
            "tokens": [3],
            "temperature": 0.2,
            "avg_logprob": -0.3,
            "compression_ratio": 1.0,
            "no_speech_prob": 0.02,
            "words": words((" Goodbye.", 2.0, 4.0)),
        },
    ],
}
TRANSCRIPT = Transcript.from_json(WIRE_TRANSCRIPT)


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(event)}\n\n".encode() for event in events)


def progress(processed: float, delta: str = "") -> dict[str, Any]:
    return {"type": "progress", "processed": processed, "duration": 4.0, "delta": delta}


DONE = {"type": "done", "transcript": WIRE_TRANSCRIPT}


class StandInGateway:
    """A `/transcribe` route that replays canned bytes in small chunks and keeps the form."""

    def __init__(self, aiohttp_server: AiohttpServer) -> None:
        self.aiohttp_server = aiohttp_server
        self.form: dict[str, Any] = {}  # the file field as (filename, content)

    async def replay(
        self,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "text/event-stream",
        chunk: int = 7,
    ) -> str:
        """Starts the route, which writes `body` `chunk` bytes at a time; its base URL."""

        async def transcribe(request: web.Request) -> web.StreamResponse:
            self.form = {
                name: (value.filename, value.file.read()) if name == "file" else value
                for name, value in (await request.post()).items()
            }
            response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
            await response.prepare(request)
            for offset in range(0, len(body), chunk):
                await response.write(body[offset : offset + chunk])
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_post("/transcribe", transcribe)
        return str((await self.aiohttp_server(app)).make_url(""))


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "talk.flac"
    path.write_bytes(b"fLaC not really")
    return path


@pytest.fixture
def gateway(aiohttp_server: AiohttpServer) -> StandInGateway:
    return StandInGateway(aiohttp_server)


async def transcribe(*argv: str) -> int:
    return await transcribe_client.run(transcribe_client.parse_args(list(argv)))


async def test_writes_the_done_transcript_as_srt(
    gateway: StandInGateway, audio: Path, tmp_path: Path
) -> None:
    url = await gateway.replay(
        sse(progress(1.5, " Hello world."), progress(4.0, " Goodbye."), DONE)
    )
    output = tmp_path / "talk.srt"
    code = await transcribe(str(audio), "--url", url, "--format", "srt", "--output", str(output))
    assert code == 0
    assert output.read_text() == formats.render(TRANSCRIPT, "srt")[0]
    assert "1\n00:00:00,000 --> 00:00:01,500\nHello world.\n" in output.read_text()


async def test_a_transcript_event_larger_than_aiohttps_line_limit(
    gateway: StandInGateway, audio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = " word" * 100_000
    segment = {**WIRE_TRANSCRIPT["segments"][0], "text": text, "words": []}
    long = {**WIRE_TRANSCRIPT, "text": text, "segments": [segment]}
    url = await gateway.replay(sse({"type": "done", "transcript": long}), chunk=65_536)
    assert await transcribe(str(audio), "--url", url) == 0
    assert capsys.readouterr().out == text + "\n"


async def test_sends_the_file_and_only_the_options_given(
    gateway: StandInGateway, audio: Path
) -> None:
    url = await gateway.replay(sse(DONE))
    assert await transcribe(str(audio), "--url", url, "--language", "en", "--word-timestamps") == 0
    assert gateway.form == {
        "file": ("talk.flac", b"fLaC not really"),
        "language": "en",
        "word_timestamps": "true",
        "stream": "true",
    }
    options = ["--prompt", "Kennedy", "--temperature", "0.2", "--channel", "1"]
    assert await transcribe(str(audio), "--url", url + "/", *options) == 0
    assert {k: v for k, v in gateway.form.items() if k != "file"} == {
        "prompt": "Kennedy",
        "temperature": "0.2",
        "channel": "1",
        "stream": "true",
    }


async def test_prints_to_stdout_with_word_timestamps(
    gateway: StandInGateway, audio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await gateway.replay(sse(DONE))
    assert (
        await transcribe(str(audio), "--url", url, "--format", "verbose_json", "--word-timestamps")
        == 0
    )
    out, err = capsys.readouterr()
    assert [w["word"] for w in json.loads(out)["words"]] == ["Hello", "world.", "Goodbye."]
    assert err == ""  # stderr is not a terminal: no progress bar


async def test_progress_bar_on_a_terminal(
    gateway: StandInGateway,
    audio: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    url = await gateway.replay(sse(progress(1.0), progress(4.0), DONE))
    assert await transcribe(str(audio), "--url", url) == 0
    out, err = capsys.readouterr()
    assert out == TRANSCRIPT.text + "\n"
    assert (
        err == "\r[#####---------------]  25%  1.0/4.0 s\r[####################] 100%  4.0/4.0 s\n"
    )
    assert await transcribe(str(audio), "--url", url, "--no-progress") == 0
    assert capsys.readouterr().err == ""


async def test_error_event(
    gateway: StandInGateway, audio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = {"message": "Triton is not ready", "type": "server_error", "code": "unavailable"}
    url = await gateway.replay(sse(progress(1.0), {"type": "error", "error": error}))
    assert await transcribe(str(audio), "--url", url) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "error: Triton is not ready\n"


async def test_http_error_with_json_body(
    gateway: StandInGateway, audio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {
        "error": {
            "message": "file is larger than 25 MB",
            "type": "invalid_request_error",
            "code": "too_large",
        }
    }
    url = await gateway.replay(
        json.dumps(body).encode(), status=413, content_type="application/json"
    )
    assert await transcribe(str(audio), "--url", url) == 1
    assert capsys.readouterr().err == "error: file is larger than 25 MB (HTTP 413)\n"


async def test_stream_that_ends_without_a_transcript(
    gateway: StandInGateway, audio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await gateway.replay(sse(progress(1.0)) + b'data: {"type": "done"')
    assert await transcribe(str(audio), "--url", url) == 1
    assert "closed the stream before the transcript was done" in capsys.readouterr().err


async def test_connection_refused(audio: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        assert await transcribe(str(audio), "--url", url) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot reach the gateway at {url}: ")


async def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await transcribe(str(tmp_path / "nope.wav")) == 2
    assert (
        capsys.readouterr().err
        == f"error: cannot read {tmp_path / 'nope.wav'}: No such file or directory\n"
    )


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


STREAM = (
    ": keep-alive comment\r\n"
    "event: progress\r\n"
    'data: {"type": "progress",\r\n'
    'data: "delta": "caf\u00e9 \u00fcber"}\r\n'
    "id: 1\r\n"
    "\r\n"
    "retry: 100\n"
    "\n"  # an event without data is not dispatched
    'data:{"type": "done",\r'
    'data: "lines": ["a", "b"]}\r'
    "\r"
    'data: {"type": "progress"}\n'  # cut off by the end of the stream: dropped
).encode()


@pytest.mark.parametrize("size", [1, 2, 3, 5, len(STREAM)])
async def test_iter_sse_events_across_chunk_boundaries(size: int) -> None:
    events = [event async for event in iter_sse_events(chunks(STREAM, size))]
    assert events == [
        {"type": "progress", "delta": "caf\u00e9 \u00fcber"},
        {"type": "done", "lines": ["a", "b"]},
    ]


async def test_iter_sse_events_rejects_data_that_is_not_json() -> None:
    with pytest.raises(transcribe_client.GatewayError, match="not JSON"):
        [event async for event in iter_sse_events(chunks(b"data: oops\n\n", 4))]
