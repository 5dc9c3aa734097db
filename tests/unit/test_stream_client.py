"""`hermes stream`: protocol tests of the WebSocket client.

A stand-in WebSocket route records what the client sends and answers with scripted messages;
it transcribes nothing. These check what the client sends, when, and how it renders the
answers and the ways a stream can end; the real gateway is the integration tests'.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import soundfile
from aiohttp import WSMsgType, web
from pytest_aiohttp import AiohttpServer

from gateway.modes.audio import SAMPLE_RATE, decode_audio
from gateway.tools import stream_client
from gateway.tools.stream_client import TranscriptPrinter, to_pcm16

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the loop pytest-aiohttp's fixtures use

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
JFK = DATA_DIR / "jfk.flac"

DONE = {"type": "done"}
FINALS = [
    {"type": "partial", "text": " And so my"},
    {"type": "final", "text": " And so my fellow Americans,", "start": 0.0, "end": 4.1},
    {"type": "partial", "text": " ask not"},
    {
        "type": "final",
        "text": " ask not what your country can do for you.",
        "start": 4.1,
        "end": 8.2,
    },
]
TRANSCRIPT = "And so my fellow Americans, ask not what your country can do for you."


@dataclass
class Received:
    kind: str  # "text" or "binary"
    data: Any  # the decoded JSON of a text message, the bytes of a binary one
    at: float  # time.monotonic() on arrival


@dataclass
class Script:
    after_config: list[dict[str, Any]] = field(default_factory=list)
    after_stop: list[dict[str, Any]] = field(default_factory=lambda: [*FINALS, DONE])
    close_after_config: tuple[int, str] | None = None  # (code, reason): refuse the stream
    interrupt_at_frame: int | None = None  # raise SIGINT in-process when this frame arrives


class StandInStreamGateway:
    """A stand-in for the gateway's /stream-audio route: records, replays, never transcribes."""

    def __init__(self, aiohttp_server: AiohttpServer) -> None:
        self.aiohttp_server = aiohttp_server
        self.received: list[Received] = []

    @property
    def texts(self) -> list[dict[str, Any]]:
        return [item.data for item in self.received if item.kind == "text"]

    @property
    def audio(self) -> bytes:
        return b"".join(item.data for item in self.received if item.kind == "binary")

    @property
    def frames(self) -> list[Received]:
        return [item for item in self.received if item.kind == "binary"]

    async def start(self, script: Script | None = None) -> str:
        script = script or Script()

        async def stream_audio(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    self.received.append(Received("binary", msg.data, time.monotonic()))
                    if len(self.frames) == script.interrupt_at_frame:
                        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C in the client
                    continue
                message = json.loads(msg.data)
                self.received.append(Received("text", message, time.monotonic()))
                if message["type"] == "config":
                    if script.close_after_config is not None:
                        code, reason = script.close_after_config
                        await ws.close(code=code, message=reason.encode())
                        break
                    for reply in script.after_config:
                        await ws.send_json(reply)
                elif message["type"] == "stop":
                    for reply in script.after_stop:
                        await ws.send_json(reply)
                    await ws.close()
                    break
            return ws

        app = web.Application()
        app.router.add_get("/stream-audio", stream_audio)
        server = await self.aiohttp_server(app)
        return str(server.make_url("/stream-audio")).replace("http://", "ws://")


@pytest.fixture
def gateway(aiohttp_server: AiohttpServer) -> StandInStreamGateway:
    return StandInStreamGateway(aiohttp_server)


@pytest.fixture
async def one_second(tmp_path: Path) -> Path:
    """The first second of the JFK clip (44.1 kHz FLAC) as a 16 kHz WAV: 16 000 samples."""
    samples = await decode_audio(JFK.read_bytes())
    path = tmp_path / "one_second.wav"
    soundfile.write(path, samples[:SAMPLE_RATE], SAMPLE_RATE)
    return path


async def stream(*argv: str) -> int:
    return await stream_client.run(stream_client.parse_args(list(argv)))


async def test_sends_config_then_the_whole_file_as_pcm16_then_stop(
    gateway: StandInStreamGateway,
) -> None:
    url = await gateway.start()
    argv = ("--url", url, "--fast", "--language", "en", "--prompt", "Ask not")
    assert await stream(str(JFK), *argv) == 0
    assert gateway.received[0].kind == "text"
    assert gateway.received[0].data == {
        "type": "config",
        "sample_rate": 16000,
        "encoding": "pcm_s16le",
        "language": "en",
        "prompt": "Ask not",
    }
    assert gateway.received[-1].kind == "text"
    assert gateway.received[-1].data == {"type": "stop"}
    assert gateway.texts == [gateway.received[0].data, {"type": "stop"}]
    expected = to_pcm16(await decode_audio(JFK.read_bytes()))
    assert len(expected) == 2 * 176_000  # 11 s at 16 kHz, 2 bytes a sample
    assert gateway.audio == expected
    sizes = [len(frame.data) for frame in gateway.frames]
    assert sizes == [3200] * 110  # 100 ms frames


async def test_config_has_only_the_options_given_and_frames_follow_frame_ms(
    gateway: StandInStreamGateway, one_second: Path
) -> None:
    url = await gateway.start()
    assert await stream(str(one_second), "--url", url, "--fast", "--frame-ms", "300") == 0
    assert gateway.texts[0] == {"type": "config", "sample_rate": 16000, "encoding": "pcm_s16le"}
    assert [len(frame.data) for frame in gateway.frames] == [9600, 9600, 9600, 3200]


async def test_pcm16_conversion() -> None:
    import numpy as np

    pcm = to_pcm16(np.array([0.0, 1.0, -1.0, 2.0, -2.0, 0.5], dtype=np.float32))
    assert np.frombuffer(pcm, "<i2").tolist() == [0, 32767, -32767, 32767, -32767, 16384]


async def test_real_time_pacing_and_fast(gateway: StandInStreamGateway, one_second: Path) -> None:
    url = await gateway.start()
    started = time.monotonic()
    assert await stream(str(one_second), "--url", url) == 0
    assert time.monotonic() - started >= 0.9  # the last 100 ms frame leaves at 0.9 s
    assert gateway.received[-1].at - gateway.received[0].at >= 0.85  # config to stop

    gateway.received.clear()
    started = time.monotonic()
    assert await stream(str(one_second), "--url", url, "--fast") == 0
    assert time.monotonic() - started < 0.6  # decoding included
    assert gateway.received[-1].at - gateway.received[0].at < 0.3
    assert len(gateway.audio) == 2 * SAMPLE_RATE


class RecordingSocket:
    """Stands in for the client's WebSocket in `send_audio`: notes when each frame leaves."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append((asyncio.get_running_loop().time(), len(data)))
        await asyncio.sleep(0.012)  # a slow socket: pacing must not add this up frame after frame


async def test_pacing_follows_the_clock_without_drift() -> None:
    ws = RecordingSocket()
    loop = asyncio.get_running_loop()
    start = loop.time()
    pcm = bytes(2 * 8000)  # 0.5 s: ten 50 ms frames
    await stream_client.send_audio(ws, pcm, 800, realtime=True)  # type: ignore[arg-type]
    assert [size for _, size in ws.sent] == [1600] * 10
    for k, (at, _) in enumerate(ws.sent):
        assert at - start >= k * 0.05 - 0.002  # never early
    # 10 x 12 ms of slow sends would push a sleep-after-send loop past 0.57 s
    assert ws.sent[-1][0] - start < 0.45 + 0.08


async def test_prints_the_finals_as_the_transcript_when_piped(
    gateway: StandInStreamGateway, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await gateway.start()
    assert await stream(str(one_second), "--url", url, "--fast") == 0
    out, err = capsys.readouterr()
    assert out == TRANSCRIPT + "\n"  # no partials, no escape codes
    assert err == ""


async def test_messages_arrive_while_audio_is_still_being_sent(
    gateway: StandInStreamGateway, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    early = {"type": "final", "text": " Early.", "start": 0.0, "end": 0.5}
    url = await gateway.start(Script(after_config=[early], after_stop=[DONE]))
    assert await stream(str(one_second), "--url", url) == 0
    assert capsys.readouterr().out == "Early.\n"


async def test_writes_the_transcript_to_output(
    gateway: StandInStreamGateway,
    one_second: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = await gateway.start()
    output = tmp_path / "transcript.txt"
    assert await stream(str(one_second), "--url", url, "--fast", "--output", str(output)) == 0
    assert output.read_text() == TRANSCRIPT + "\n"
    assert capsys.readouterr().out == TRANSCRIPT + "\n"


async def test_json_prints_every_message(
    gateway: StandInStreamGateway, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await gateway.start()
    assert await stream(str(one_second), "--url", url, "--fast", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [*FINALS, DONE]


async def test_on_a_terminal_the_partial_is_redrawn_in_place(
    gateway: StandInStreamGateway,
    one_second: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    url = await gateway.start()
    assert await stream(str(one_second), "--url", url, "--fast") == 0
    out = capsys.readouterr().out
    assert out == (
        "\r\x1b[90mAnd so my\x1b[0m\x1b[K"
        "\rAnd so my fellow Americans,\x1b[K"
        "\rAnd so my fellow Americans,\x1b[90m ask not\x1b[0m\x1b[K"
        f"\r{TRANSCRIPT}\x1b[K"
        f"\r{TRANSCRIPT}\x1b[K\n"
    )


async def test_terminal_lines_wrap_at_the_width() -> None:
    out = io.StringIO()
    printer = TranscriptPrinter(out, tty=True, width=30)
    for message in FINALS:
        printer.show(message)
    printer.finish()
    screen = [line.split("\r")[-1].replace("\x1b[K", "") for line in out.getvalue().split("\n")]
    assert screen == [
        "And so my fellow Americans,",
        "ask not what your country can",
        "do for you.",
        "",
    ]
    assert all(len(line) < 30 for line in screen)
    assert printer.transcript == TRANSCRIPT


async def test_an_error_message_goes_to_stderr_and_the_stream_goes_on(
    gateway: StandInStreamGateway, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = {"type": "error", "message": "unsupported language: xx"}
    url = await gateway.start(Script(after_config=[error]))
    assert await stream(str(one_second), "--url", url, "--fast", "--language", "xx") == 0
    out, err = capsys.readouterr()
    assert err == "error: unsupported language: xx\n"
    assert out == TRANSCRIPT + "\n"


async def test_gateway_closes_with_too_many_streams(
    gateway: StandInStreamGateway,
    one_second: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = await gateway.start(Script(close_after_config=(1013, "4 streams already open")))
    assert await stream(str(one_second), "--url", url) == 1
    err = capsys.readouterr().err
    assert err == "error: the gateway closed the stream (code 1013: 4 streams already open)\n"


async def test_gateway_closes_without_a_reason(
    gateway: StandInStreamGateway, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await gateway.start(Script(close_after_config=(1008, "")))
    assert await stream(str(one_second), "--url", url, "--fast") == 1
    assert "(code 1008: idle timeout)" in capsys.readouterr().err


async def test_gateway_closes_after_stop_without_done(
    gateway: StandInStreamGateway, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await gateway.start(Script(after_stop=FINALS))
    assert await stream(str(one_second), "--url", url, "--fast") == 1
    out, err = capsys.readouterr()
    assert out == TRANSCRIPT + "\n"  # what was committed is still printed
    assert err == "error: the gateway closed the stream (code 1000: closed)\n"


async def test_ctrl_c_sends_stop_and_waits_for_done(
    gateway: StandInStreamGateway, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGINT)
    url = await gateway.start(Script(interrupt_at_frame=3))
    started = time.monotonic()
    assert await stream(str(one_second), "--url", url) == 130
    assert time.monotonic() - started < 0.8  # the rest of the second was not sent
    assert gateway.received[-1].data == {"type": "stop"}
    assert 3 <= len(gateway.frames) < 10
    assert capsys.readouterr().out == TRANSCRIPT + "\n"  # the finals sent after stop
    assert signal.getsignal(signal.SIGINT) is before


async def test_connection_refused(one_second: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/stream-audio"
    assert await stream(str(one_second), "--url", url) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot reach the gateway at {url}: ")


async def test_a_route_that_is_not_a_websocket(
    aiohttp_server: AiohttpServer, one_second: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await aiohttp_server(web.Application())
    url = str(server.make_url("/stream-audio")).replace("http://", "ws://")
    assert await stream(str(one_second), "--url", url) == 1
    assert "refused the stream (HTTP 404" in capsys.readouterr().err


async def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.wav"
    assert await stream(str(missing)) == 2
    assert capsys.readouterr().err == f"error: cannot read {missing}: No such file or directory\n"


async def test_file_that_is_not_audio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("these are meeting notes, not a recording\n")
    assert await stream(str(notes)) == 2
    assert capsys.readouterr().err == f"error: cannot decode {notes}: the file is text, not audio\n"


async def test_bad_frame_ms_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        stream_client.parse_args(["clip.wav", "--frame-ms", "0"])
    assert exit_info.value.code == 2


async def test_the_stream_command_is_registered() -> None:
    from gateway.tools import cli

    assert cli.COMMANDS["stream"][0] is stream_client.main
