"""Hostile and broken input through the real gateway and the real Triton: the committed corpus
in `tests/data/hostile/` (its README lists every file and its answer), hostile WebSocket
frames, and a bounded mutation fuzz over the shared clips. Every input gets its documented
answer, nothing outside the upload is ever read, and the service keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import gzip
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import aiohttp
import numpy as np
import pytest

from gateway.modes.audio import ffmpeg_executable
from gateway.server.keys import SETTINGS, STREAMS
from testsupport.clips import DATA_DIR
from testsupport.hostile_corpus import CORPUS, render
from testsupport.streams import assert_protocol, pcm16, stream
from testsupport.wer import normalized_words, word_error_rate

pytestmark = pytest.mark.integration

HOSTILE_DIR = DATA_DIR / "hostile"
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=300)  # a hang fails the test, not CI
ERROR_CODES = {400: "invalid_audio", 413: "audio_too_long", 415: "unsupported_file_type"}
JFK_OPENING = "And so my fellow Americans, ask not"
JFK_TO_THE_CUT = "And so my fellow Americans, ask not what your country can do for you"
T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    """What the gateway says to one corpus file: an error status and a fragment of its
    message, or 200, this duration, and this text (after Whisper's normalisation; at most one
    word in seven off, as tiny.en hears a few seconds out of context: "asked not")."""

    status: int
    said: str = ""
    duration: float | None = None


ANSWERS: dict[str, Answer] = {
    # empty and truncated
    "empty.wav": Answer(400, "the file is empty"),
    "header-only.wav": Answer(400, "the file contains no audio samples"),
    "zero-samples.wav": Answer(400, "the file contains no audio samples"),
    "cut-in-header.flac": Answer(400, "Invalid data found when processing input"),
    "cut-mid-frame.mp3": Answer(200, JFK_TO_THE_CUT, 7.8),
    # corrupt headers
    "riff-size-garbage.wav": Answer(200, JFK_OPENING, 4.8),
    "fmt-unknown-codec.wav": Answer(400, "no decoder found"),
    "fmt-zero-channels.wav": Answer(400, "Decoder requires channel layout to be set"),
    "flac-streaminfo-zeroed.flac": Answer(400, "Error while opening decoder"),
    "mp3-no-frame-sync.mp3": Answer(400, "Invalid data found when processing input"),
    "mp3-huge-id3.mp3": Answer(400, "Failed to find two consecutive MPEG audio frames"),
    # the name is not the content
    "speech-named.pdf": Answer(200, JFK_OPENING, 4.8),
    "document-named.wav": Answer(415, "the file is a PDF document, not audio"),
    # not audio
    "document.pdf": Answer(415, "the file is a PDF document, not audio"),
    "image.png": Answer(415, "the file is a PNG image, not audio"),
    "image.jpg": Answer(415, "the file is a JPEG image, not audio"),
    "notes.txt": Answer(415, "the file is text, not audio"),
    "program.elf": Answer(415, "the file is an executable, not audio"),
    "archive.zip": Answer(415, "the file is a ZIP archive"),
    "random.bin": Answer(400, "Invalid data found when processing input"),
    "video-no-audio.mp4": Answer(415, "the file has no audio stream"),
    # absurd but well formed
    "declares-hours.wav": Answer(200, JFK_OPENING, 4.8),
    "decodes-to-hours.flac": Answer(413, "the audio is longer than the limit of 600 s"),
    "decodes-to-hours-undeclared.flac": Answer(413, "the audio is longer than the limit of 600 s"),
    "rate-1hz.wav": Answer(200, "", 40.0),
    "rate-384khz.flac": Answer(200, "", 0.5),
    "rate-zero.wav": Answer(400, "Invalid sample rate: 0"),
    "rate-2ghz.wav": Answer(400, "Failed to initialize resampler"),
    "channels-32.wav": Answer(200, "", 0.1),
    "channels-64.opus": Answer(200, JFK_OPENING, 4.8),
    "channels-65535.wav": Answer(400, "Too many channels: 65535"),
    # files that name other files (templates: they point at the test's canary)
    "playlist.m3u8.tmpl": Answer(415, "the file is a playlist, not audio"),
    "playlist-binary.m3u8.tmpl": Answer(415, "the file is a playlist, not audio"),
    "playlist-behind-id3.m3u8.tmpl": Answer(
        400, "Not detecting m3u8/hls with non standard extension"
    ),
    "list.ffconcat.tmpl": Answer(415, "the file is text, not audio"),
    "list-binary.ffconcat.tmpl": Answer(415, "a format the gateway does not read"),
    "session.sdp.tmpl": Answer(415, "the file is text, not audio"),
    "session-binary.sdp.tmpl": Answer(415, "a format the gateway does not read"),
    "external-track.mov.tmpl": Answer(400, "the file contains no audio samples"),
    "urls-in-metadata.mka.tmpl": Answer(200, JFK_OPENING, 4.8),
}


# --- the canary: evidence that nothing outside the upload is read -------------------------


class FileWatch:
    """Counts every open and read of one file, by any process (Linux inotify)."""

    IN_ACCESS, IN_OPEN = 0x001, 0x020
    EVENT_BYTES = 16  # struct inotify_event without a name (a watched file, not a directory)

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if (
            self.fd < 0
            or libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_ACCESS | self.IN_OPEN) < 0
        ):
            raise OSError(ctypes.get_errno(), f"inotify cannot watch {path}")

    def events(self) -> int:
        """Opens and reads since the last call."""
        count = 0
        while True:
            try:
                count += len(os.read(self.fd, 64 * 1024)) // self.EVENT_BYTES
            except BlockingIOError:
                return count

    def close(self) -> None:
        os.close(self.fd)


class CanaryServer:
    """An HTTP server on loopback that serves the canary and records every connection."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[str] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/canary.wav"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.requests)
        self.requests.append("connection")  # before a byte is read: any contact counts
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            self.requests[index] = head.split(b"\r\n", 1)[0].decode("latin-1")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(self.body), self.body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@dataclass
class Canary:
    """Real speech (the Harvard sentences) at a known absolute path and a loopback URL. Had
    ffmpeg read it through any trick, three things would show: the inotify watch on the file
    counts an open or a read, the HTTP server records a connection, and the reply carries the
    canary's words (the tricks that hold no audio of their own would even succeed)."""

    path: Path
    url: str
    watch: FileWatch
    server: CanaryServer
    words: set[str]  # the canary's, none of them in JFK's text

    def render(self, template: bytes) -> bytes:
        return render(template, str(self.path), self.url)

    def reset(self) -> None:
        self.watch.events()
        self.server.requests.clear()

    def assert_untouched(self, reply_text: str = "") -> None:
        assert self.watch.events() == 0, f"something opened or read {self.path}"
        assert self.server.requests == [], f"something asked {self.url}: {self.server.requests}"
        assert not set(normalized_words(reply_text)) & self.words, reply_text


@pytest.fixture(scope="module")
async def canary(tmp_path_factory: pytest.TempPathFactory, clips) -> AsyncIterator[Canary]:
    harvard, jfk = clips["OSR_us_000_0034_8k.wav"], clips["jfk.flac"]
    path = tmp_path_factory.mktemp("canary") / "canary.wav"
    body = harvard.path.read_bytes()
    path.write_bytes(body)
    server = CanaryServer(body)
    url = await server.start()
    words = {w for w in normalized_words(harvard.text) if len(w) > 3} - set(
        normalized_words(jfk.text)
    )
    watch = FileWatch(path)
    try:
        yield Canary(path, url, watch, server, words)
    finally:
        watch.close()
        await server.close()


def corpus_file(name: str, canary: Canary) -> tuple[str, bytes]:
    """The upload's name (a template loses `.tmpl`) and bytes (templates point at the canary)."""
    data = (HOSTILE_DIR / name).read_bytes()
    if name.endswith(".tmpl"):
        return name.removesuffix(".tmpl"), canary.render(data)
    return name, data


# --- helpers ---------------------------------------------------------------------------------


async def upload(gateway, route: str, name: str, data: bytes) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    reply = await gateway.post(route, data=form, timeout=CLIENT_TIMEOUT)
    assert reply.content_type == "application/json", await reply.text()
    return reply.status, await reply.json()


def assert_error_body(body: dict, code: str) -> str:
    """OpenAI's error shape (the gateway may add a request id) with this code; the message."""
    error = body["error"]
    assert {"message", "type", "code"} <= set(error), body
    assert error["type"] == "invalid_request_error" and error["code"] == code, body
    assert "Traceback" not in error["message"] and " @ 0x" not in error["message"], error
    return error["message"]


def assert_answer(name: str, status: int, body: dict) -> None:
    answer = ANSWERS[name]
    assert status == answer.status, (name, body)
    if status != 200:
        assert answer.said in assert_error_body(body, ERROR_CODES[status]), (name, body)
        return
    assert word_error_rate(answer.said, body["text"]) <= 0.15, (name, body["text"])
    assert body["duration"] == pytest.approx(answer.duration, abs=0.15), name


async def assert_healthy(gateway) -> None:
    reply = await gateway.get("/healthz", timeout=aiohttp.ClientTimeout(total=5))
    assert reply.status == 200 and (await reply.json())["status"] == "ok"


async def assert_transcribes_jfk(gateway, clips) -> None:
    status, body = await upload(
        gateway, "/v1/audio/transcriptions", "jfk.flac", clips["jfk.flac"].path.read_bytes()
    )
    assert status == 200 and word_error_rate(clips["jfk.flac"].text, body["text"]) == 0.0, body


def ffmpeg_children() -> list[int]:
    """ffmpeg processes whose parent is this process (the gateway runs in it)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        name, fields = (
            stat[stat.index("(") + 1 : stat.rindex(")")],
            stat[stat.rindex(")") + 2 :].split(),
        )
        if name.startswith("ffmpeg") and int(fields[1]) == os.getpid():
            found.append(int(entry.name))
    return found


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def peak_growth(work: Awaitable[T]) -> tuple[T, int]:
    """`work`'s result, and how far this process's memory (the gateway's) grew meanwhile."""
    baseline, peak = resident_bytes(), 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, resident_bytes())
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        return await work, peak - baseline
    finally:
        sampler.cancel()


# --- the corpus --------------------------------------------------------------------------------


def test_every_corpus_file_is_built_by_the_script_answered_and_documented() -> None:
    on_disk = {
        p.name for p in HOSTILE_DIR.iterdir() if p.is_file() and p.suffix not in (".py", ".md")
    }
    assert on_disk == set(CORPUS) == set(ANSWERS)
    readme = (HOSTILE_DIR / "README.md").read_text()
    assert [name for name in on_disk if f"| `{name}` |" not in readme] == []
    assert sum((HOSTILE_DIR / name).stat().st_size for name in on_disk) < 1_000_000


@pytest.mark.parametrize("name", list(ANSWERS))
async def test_each_corpus_file_gets_its_answer_and_the_service_goes_on(
    gateway, canary: Canary, name: str
) -> None:
    canary.reset()
    status, body = await upload(gateway, "/transcribe", *corpus_file(name, canary))
    assert_answer(name, status, body)
    canary.assert_untouched(body.get("text", ""))
    await assert_healthy(gateway)


async def test_the_whole_corpus_to_one_gateway_then_jfk_word_for_word(
    make_gateway, gateway_settings, canary, clips
) -> None:
    """All of it to one gateway, eight uploads at a time (within its admission bound): the
    same answers, no ffmpeg left running, and it still transcribes JFK word for word. (One
    client sends every refused file here: its refusals are not held against it.)"""
    canary.reset()
    names, slots = list(ANSWERS), asyncio.Semaphore(8)
    gateway = await make_gateway(
        replace(gateway_settings, max_refused_uploads_per_client=len(names) + 1)
    )

    async def send(name: str) -> tuple[int, dict]:
        async with slots:
            return await upload(gateway, "/transcribe", *corpus_file(name, canary))

    replies = await asyncio.gather(*(send(name) for name in names))
    for name, (status, body) in zip(names, replies, strict=True):
        assert_answer(name, status, body)
        canary.assert_untouched(body.get("text", ""))
    assert ffmpeg_children() == []
    await assert_healthy(gateway)
    await assert_transcribes_jfk(gateway, clips)


@pytest.mark.parametrize("name", ["decodes-to-hours.flac", "decodes-to-hours-undeclared.flac"])
async def test_hours_of_audio_stop_at_the_limit_without_buffering_them(gateway, name) -> None:
    """16 KB of FLAC that decodes to 10 hours (2.3 GB of samples): refused on the length its
    header declares, or, with that erased, ffmpeg is told to stop at the limit (600 s here,
    38 MB); either way the reply is quick and the gateway's memory never grows by anything
    like the hours."""
    data = (HOSTILE_DIR / name).read_bytes()
    started = time.monotonic()
    (status, body), growth = await peak_growth(upload(gateway, "/transcribe", "hours.flac", data))
    assert status == 413
    assert "longer than the limit of 600 s" in assert_error_body(body, "audio_too_long")
    assert growth < 400 << 20, f"grew by {growth >> 20} MB"
    assert time.monotonic() - started < 60


async def test_a_gzip_request_body_is_capped_as_it_inflates(gateway) -> None:
    """64 KB that inflate to 64 MB, sent as the body with `Content-Encoding: gzip`: aiohttp
    inflates as the gateway reads, and the upload cap (8 MB here) counts inflated bytes."""
    bomb = gzip.compress(bytes(64 << 20), 9)
    reply, growth = await peak_growth(
        gateway.post(
            "/transcribe",
            data=bomb,
            timeout=CLIENT_TIMEOUT,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        )
    )
    assert reply.status == 413, await reply.text()
    assert "larger than the limit of 8 MB" in assert_error_body(
        await reply.json(), "file_too_large"
    )
    assert growth < 64 << 20, f"grew by {growth >> 20} MB"


PERMISSIVE_FFMPEG = {
    "playlist.m3u8.tmpl": ["-extension_picky", "0", "-protocol_whitelist", "file,http,tcp"],
    "list.ffconcat.tmpl": ["-safe", "0", "-protocol_whitelist", "file,http,tcp"],
    "external-track.mov.tmpl": ["-enable_drefs", "1", "-use_absolute_path", "1"],
}


@pytest.mark.parametrize("name", list(PERMISSIVE_FFMPEG))
async def test_the_tricks_work_on_a_permissive_ffmpeg_so_the_canary_would_tell(
    canary: Canary, tmp_path: Path, name: str
) -> None:
    """The control for the corpus tests: the same templates, given to ffmpeg with the doors
    opened (no whitelists, the demuxers' own safety options off), do read the canary, and the
    watch and the server see it. So their silence in the gateway's tests means something."""
    path = tmp_path / name.removesuffix(".tmpl")
    path.write_bytes(canary.render((HOSTILE_DIR / name).read_bytes()))
    canary.reset()
    process = await asyncio.create_subprocess_exec(
        ffmpeg_executable(),
        "-nostdin",
        "-loglevel",
        "error",
        *PERMISSIVE_FFMPEG[name],
        "-i",
        str(path),
        "-f",
        "f32le",
        "-ac",
        "1",
        "-ar",
        "16000",
        "-",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert len(stdout) > 16000 * 4, stderr.decode()  # it decoded seconds of the canary
    assert canary.watch.events() > 0
    if name != "external-track.mov.tmpl":
        assert any("GET /canary.wav" in request for request in canary.server.requests)


# --- WebSocket frames -------------------------------------------------------------------------

NAN_FRAME = np.full(1600, np.nan, np.float32).tobytes()
INF_FRAME = np.concatenate([np.zeros(800), [np.inf], np.zeros(799)]).astype(np.float32).tobytes()
F32 = {"encoding": "f32le"}

WS_CASES = {
    # (config, hostile messages before the audio, what the error says)
    "f32 NaN": (F32, [NAN_FRAME], "NaN or infinite samples; frame dropped"),
    "f32 infinity": (F32, [INF_FRAME], "NaN or infinite samples; frame dropped"),
    "odd-length PCM16": (None, [b"\x00" * 3199], "not a whole number of 2-byte samples"),
    "one byte": (None, [b"\x7f"], "not a whole number of 2-byte samples"),
    "text that is not JSON": (None, ["hello, are you listening?"], "a text message must be JSON"),
    "audio as base64 text": (
        None,
        [base64.b64encode(b"\x00" * 3200).decode()],
        "a text message must be JSON",
    ),
    "a JSON array": (None, ["[1, 2, 3]"], "unknown message type None"),
    "a JSON string": (None, ['"stop"'], "unknown message type None"),
    "a type that is a number": (None, ['{"type": 5}'], "unknown message type 5"),
    "deeply nested JSON": (None, ["[" * 100_000], "a text message must be JSON"),
    "encoding of the wrong type": (
        None,
        ['{"type": "config", "encoding": ["f32le"]}'],
        "bad config: encoding must be one of",
    ),
    "sample_rate as a string": (
        None,
        ['{"type": "config", "sample_rate": "16000"}'],
        "bad config: sample_rate must be an integer",
    ),
    "a config of the wrong type": (
        None,
        ['{"type": "config", "channels": {"n": 2}}'],
        "bad config: channels must be an integer",
    ),
}


@pytest.mark.parametrize("case", list(WS_CASES))
async def test_hostile_websocket_messages_get_an_error_and_the_session_goes_on(
    gateway, clips, case: str
) -> None:
    config, hostile, said = WS_CASES[case]
    jfk = clips["jfk.flac"]
    audio = jfk.audio.astype("<f4").tobytes() if config == F32 else pcm16(jfk.audio)
    bytes_per_second = 16000 * (4 if config == F32 else 2)
    run = await stream(
        gateway,
        audio,
        bytes_per_second=bytes_per_second,
        pace=20.0,
        config=config,
        before_audio=hostile,
    )
    errors = [m["message"] for m in run.of_type("error")]
    assert len(errors) == len(hostile) and all(said in e for e in errors), errors
    run.messages = [m for m in run.messages if m["type"] != "error"]
    assert_protocol(run)
    assert word_error_rate(jfk.text, run.text) == 0.0, run.text


async def test_a_frame_over_the_size_limit_closes_with_1009_and_the_service_goes_on(
    gateway, clips
) -> None:
    """aiohttp refuses a message over `stream_max_frame_bytes` (1 MiB) while reading it and
    closes the socket with 1009 (message too big); the stream is released."""
    limit = gateway.server.app[SETTINGS].stream_max_frame_bytes
    async with gateway.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(b"\x00" * (limit + 2))
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.CLOSE, message
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    for _ in range(50):
        if not gateway.server.app[STREAMS]:
            break
        await asyncio.sleep(0.1)
    assert not gateway.server.app[STREAMS]
    await assert_healthy(gateway)
    run = await stream(gateway, pcm16(clips["jfk.flac"].audio), bytes_per_second=32000, pace=20.0)
    assert word_error_rate(clips["jfk.flac"].text, run.text) == 0.0, run.text


async def test_a_flood_of_tiny_frames_is_transcribed_and_the_gateway_stays_responsive(
    gateway, clips
) -> None:
    """JFK as one-sample (2-byte) frames: 176 000 of them as fast as the socket takes them.
    Meanwhile /healthz answers promptly, and the transcript is word for word."""
    jfk = clips["jfk.flac"]
    samples = pcm16(jfk.audio)
    latencies: list[float] = []
    async with gateway.ws_connect("/stream-audio") as ws:
        flood_done = asyncio.Event()

        async def probe() -> None:
            while not flood_done.is_set():
                started = time.monotonic()
                await assert_healthy(gateway)
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.2)

        prober = asyncio.create_task(probe())
        started = time.monotonic()
        for offset in range(0, len(samples), 2):
            await ws.send_bytes(samples[offset : offset + 2])
        flood_seconds = time.monotonic() - started
        await ws.send_json({"type": "stop"})
        messages = []
        async for message in ws:
            messages.append(json.loads(message.data))
        flood_done.set()
        await prober
    finals = "".join(m["text"] for m in messages if m["type"] == "final")
    assert messages[-1]["type"] == "done" and not [m for m in messages if m["type"] == "error"]
    assert word_error_rate(jfk.text, finals) == 0.0, finals
    assert latencies and max(latencies) < 2.0, (latencies, flood_seconds)


# --- mutation fuzz ------------------------------------------------------------------------------

FUZZ_CASES = int(os.environ.get("HERMES_FUZZ_CASES", "60"))
FUZZ_SEED = int(os.environ.get("HERMES_FUZZ_SEED", "3"))
FUZZ_CLIPS = ("jfk.flac", "OSR_us_000_0034_8k.wav", "hotwords.mp3", "stereo_diarization.wav")


def mutate(rng: random.Random, clips: dict[str, bytes]) -> tuple[str, bytes]:
    """One mutant of one clip: a description and its bytes."""
    name = rng.choice(FUZZ_CLIPS)
    data = bytearray(clips[name])
    kind = rng.choice(["flip", "header", "cut", "drop", "splice", "repeat"])
    if kind in ("flip", "header"):
        span = min(len(data), 512) if kind == "header" else len(data)
        for _ in range(rng.randint(1, 64)):
            data[rng.randrange(span)] ^= rng.randint(1, 255)
    elif kind == "cut":
        del data[rng.randrange(len(data)) :]
    elif kind == "drop":
        start = rng.randrange(len(data))
        del data[start : start + rng.randint(1, 64 * 1024)]
    elif kind == "splice":
        other = clips[rng.choice(FUZZ_CLIPS)]
        data = data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :]
    else:  # a chunk of the file again, somewhere else
        start, length = rng.randrange(len(data)), rng.randint(1, 32 * 1024)
        at = rng.randrange(len(data))
        data[at:at] = data[start : start + length]
    return f"{kind} of {name}", bytes(data)


async def test_mutation_fuzz_gets_no_5xx_and_leaves_nothing_behind(
    make_gateway, gateway_settings, clips
) -> None:
    """HERMES_FUZZ_CASES mutants (seeded: HERMES_FUZZ_SEED) of the shared clips, two at a time
    through OpenAI's route: each is 200 with a text or a 4xx in OpenAI's error shape. Audio
    over 15 s is refused (413: the Harvard clip, long splices), which keeps the model's share
    of the run, and the run, to about two minutes on two cores."""
    gateway = await make_gateway(
        replace(
            gateway_settings,
            max_audio_seconds=15.0,
            decode_timeout_s=30.0,
            max_refused_uploads_per_client=FUZZ_CASES + 1,  # one client sends every mutant
        )
    )
    sources = {name: clips[name].path.read_bytes() for name in FUZZ_CLIPS}
    rng = random.Random(FUZZ_SEED)
    mutants = [mutate(rng, sources) for _ in range(FUZZ_CASES)]
    slots = asyncio.Semaphore(2)
    outcomes: Counter[str] = Counter()

    async def one(label: str, data: bytes) -> None:
        async with slots:
            started = time.monotonic()
            status, body = await upload(gateway, "/v1/audio/transcriptions", "mutant", data)
            print(f"{label}: {status} in {time.monotonic() - started:.1f} s")
        if status == 200:
            assert isinstance(body["text"], str), (label, body)
        else:
            assert status in ERROR_CODES, (label, status, body)
            assert_error_body(body, ERROR_CODES[status])
        outcomes[str(status)] += 1

    await asyncio.gather(*(one(label, data) for label, data in mutants))
    print(f"fuzz outcomes (seed {FUZZ_SEED}): {dict(outcomes)}")
    assert sum(outcomes.values()) == FUZZ_CASES
    assert outcomes["200"] and set(outcomes) - {"200"}, outcomes  # both paths exercised
    assert ffmpeg_children() == []
    await assert_healthy(gateway)
    await assert_transcribes_jfk(gateway, clips)
