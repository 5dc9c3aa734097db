"""`python -m benchmarks.hostile`: the hostile soak. Honest live streams and uploads run on the
real stack throughout, first alone (the baseline), then beside each attack in turn: WebSocket
floods, multipart floods, slow bodies, over-long files, clients that hang up, a poisoned batch
straight to Triton, a Triton killed and restarted by its supervisor. Per attack: what the
attacker got against what it should get, what it cost the gateway and Triton (peak memory over
idle, CPU seconds), and the honest clients' WER and final latency against the baseline, with
every honest stream's words either transcribed or reported `skipped` and every honest upload
answered with text or a documented error. A verdict (exit status 1 on fail) and a report
under benchmarks/results/, as `benchmarks.soak` writes."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import difflib
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from benchmarks import composite, report, resources, service
from benchmarks.audio import HARVARD, JFK, Item, clip, pcm16
from benchmarks.report import RESULTS_DIR, TMP_DIR, log
from benchmarks.service import FileReference, StreamRun, words_of
from benchmarks.soak import (
    FAULTS,
    LATENCY_FACTOR,
    LATENCY_SLACK_S,
    NORMAL_CLOSE,
    SETTLE_S,
    WER_MARGIN,
    Ledger,
    Monitor,
    describe,
    file_mode_baselines,
    mixed_phase,
    own_client,
    positive_float,
    positive_int,
    within_latency,
)
from benchmarks.stack import Stack, running_stack
from gateway.backend.triton_tensors import MODEL_NAME, OUTPUTS, build_inputs, parse_outputs
from gateway.core.contract import Priority, TranscribeOptions
from gateway.modes.audio import SAMPLE_RATE, WINDOW_SAMPLES
from gateway.server.settings import Settings
from testsupport.hostile_corpus import HERE as HOSTILE_DIR
from testsupport.triton import crash
from testsupport.wer import word_error_rate

# ---- the verdict's tolerances ----------------------------------------------------------------
# The service decodes greedily: the same clip gives the same text (0 % on the clips in the
# soak). The honest clients' mean WER may move by this much (absolute) from the baseline's.
WER_TOLERANCE = 0.05
# A stream lost words without saying so when more than this share of its clip's words (the
# file-mode transcript's) is neither in its finals nor inside a stretch reported `skipped`;
# an upload when its WER is WER_MARGIN above the file's (soak.Ledger) or it got no answer.
LOST_WORDS_FRACTION = WER_MARGIN
SKIP_SLACK_S = 1.0  # a word ending this close to a skipped stretch counts as reported
# Issue 20: four over-long files at once "must cost the gateway well under a gigabyte more
# than idle"; no attack may cost more.
GATEWAY_PEAK_BOUND_MIB = 1024.0
# A hung-up upload may cost at most this share of the model windows a complete one takes.
HANGUP_WORK_FRACTION = 0.25

# ---- the attacks' sizes ----------------------------------------------------------------------
ATTACKER_NICENESS = 10  # see attack_from_elsewhere
# Loopback too, but to the gateway another client than the honest ones (127.0.0.1): each
# attack from an address of its own, 127.0.0.2 on, so that what the gateway holds against a
# client (its uploads refused in the last minute) does not carry from one phase to the next.
FIRST_ATTACKER_HOST = 2
FLOOD_CONNECTIONS = 4
FLOOD_MINUTES = 30.0
MULTIPART_CONNECTIONS = 4
MULTIPART_FIELDS = 2000
MULTIPART_LARGE_FIELD = 60_000  # 2,000 of these: the 500 after 0.7 s
SLOW_CONNECTIONS = 12  # more than max_uploads_per_client (8): the rest are refused at once
SLOW_BYTES_PER_S = 1.0
OVERLONG_UPLOADS = 4
# half say how long they are (refused on that), half do not (decoded up to a limit)
OVERLONG_FILES = ("decodes-to-hours.flac", "decodes-to-hours-undeclared.flac")
HANGUP_UPLOADS = 4
HANGUP_AFTER_S = (1.0, 1.33, 1.67, 2.0)
HANGUP_WAVE_PAUSE_S = 3.0
POISON_NAN, POISON_INT16 = 3, 3  # per burst, with one honest JFK window
RESTART_AFTER_S = 3.0  # into the phase, so honest work is in flight when Triton dies
RESTART_READY_TIMEOUT_S = 300.0
ATTACK_REPLY_TIMEOUT_S = 180.0
PEAK_SAMPLE_EVERY_S = 0.5
# The soak's gateway runs with the shipped defaults (per-client bounds and the 3 h limit
# included; the attackers come from another address) except the body-read timeout, 120 s by
# default, which would outlast a phase: the slow bodies' 408 comes after this instead.
UPLOAD_READ_TIMEOUT_S = 30.0

ATTACKS = ("ws-flood", "multipart-flood", "slow-bodies", "overlong-files", "hang-ups", "poison")
RESTART = "triton-restart"
ALL_PHASES = (*ATTACKS, RESTART)
DESCRIPTIONS = {
    "baseline": "no attack: the honest clients alone",
    "ws-flood": (
        f"{FLOOD_CONNECTIONS} WebSockets each send {FLOOD_MINUTES:g} min of PCM16 in 1 MiB frames "
        "as fast as they go, then `stop`, over and over; one more sends frames over 1 MiB"
    ),
    "multipart-flood": (
        f"{MULTIPART_CONNECTIONS} chunked multipart bodies of {MULTIPART_FIELDS} fields (half "
        f"of 16 bytes, half of {MULTIPART_LARGE_FIELD // 1000} KB) at a time, over and over"
    ),
    "slow-bodies": (
        f"{SLOW_CONNECTIONS} uploads at once trickling their body at 1 byte/s, wave after wave"
    ),
    "overlong-files": (
        f"{OVERLONG_UPLOADS} concurrent uploads of a 16 KB FLAC that decodes to 10 h (half "
        "of them with that length erased from the header), wave after wave"
    ),
    "hang-ups": (
        f"{HANGUP_UPLOADS} uploads of the 404.8 s composite whose client hangs up 1-2 s after "
        "sending it, wave after wave"
    ),
    "poison": (
        f"straight to Triton over gRPC, bursts of {POISON_NAN} AUDIO with NaN and "
        f"{POISON_INT16} int16-scale AUDIO at both priorities, with one good JFK window"
    ),
    RESTART: "tritonserver SIGKILLed with its stub; the supervisor starts it again",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument(
        "--seconds",
        type=positive_float,
        default=30.0,
        help="how long the baseline and each attack start new work (default 30)",
    )
    parser.add_argument(
        "--streams", type=positive_int, default=3, help="honest real-time streams (default 3)"
    )
    parser.add_argument(
        "--uploads", type=positive_int, default=2, help="honest upload clients (default 2)"
    )
    parser.add_argument(
        "--attacks",
        default=",".join(ALL_PHASES),
        help=f"comma-separated, in this order: {','.join(ALL_PHASES)} (default all)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="results directory")
    # the honest load is streams and plain uploads, as in every hostile soak so far (the soak's
    # Realtime sessions and diarized uploads are not part of it)
    parser.set_defaults(realtime=0, diarized=0)
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.attacks.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ALL_PHASES))
    if unknown or not chosen:
        parser.error(f"--attacks: unknown {', '.join(unknown) or '(none chosen)'}")
    args.attacks = [name for name in ALL_PHASES if name in chosen]
    return args


# ---- what the attacker got -------------------------------------------------------------------


@dataclass
class AttackLog:
    """Each answer an attack got, counted by what it was and whether it was the documented
    one; free-form notes (timings, sizes) for the report."""

    got: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)

    def record(self, what: str, expected: bool) -> None:
        (self.got if expected else self.unexpected)[what] += 1
        if not expected:
            log(f"attack got the unexpected: {what}")

    def summary(self) -> dict[str, Any]:
        return {
            "got": dict(self.got),
            "unexpected": dict(self.unexpected),
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Reply:
    """An HTTP answer as an attacker sees it; `status` None when none came."""

    status: int | None
    code: str = ""  # the error code of an OpenAI-shaped error body
    retry_after: str | None = None
    seconds: float = 0.0
    why: str = ""  # for no answer: how it ended

    def label(self) -> str:
        if self.status is None:
            return f"no answer ({self.why})"
        retry = " + Retry-After" if self.retry_after is not None else ""
        return f"{self.status} {self.code or '(no code)'}{retry}"


def reply_of(status: int, headers: dict[str, str], body: bytes, seconds: float) -> Reply:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    return Reply(status, code, headers.get("retry-after"), seconds)


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read(1 << 20)
    return status, headers, body


def gateway_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def attacker_host(attack: str) -> str:
    return f"127.0.0.{FIRST_ATTACKER_HOST + ATTACKS.index(attack)}"


async def raw_request(
    arena: Arena,
    head: bytes,
    body: Callable[[asyncio.StreamWriter], Awaitable[None]],
    *,
    timeout: float = ATTACK_REPLY_TIMEOUT_S,
    hang_up_after: float | None = None,
) -> Reply:
    """One request on a connection of its own from the attacker's address: `head`, then
    `body(writer)` while the reply is read; the body stops when the reply comes. With
    `hang_up_after`, the client closes the connection that long after its body is sent."""
    host, port = gateway_address(arena.url)
    reader, writer = await asyncio.open_connection(host, port, local_addr=(arena.address, 0))
    started = time.monotonic()

    async def send() -> None:
        writer.write(head)
        await writer.drain()
        await body(writer)

    sender = asyncio.create_task(send())
    try:
        if hang_up_after is not None:
            await asyncio.wait_for(sender, timeout)
            await asyncio.sleep(hang_up_after)
            return Reply(None, seconds=time.monotonic() - started, why="hung up")
        status, headers, data = await asyncio.wait_for(read_reply(reader), timeout)
        return reply_of(status, headers, data, time.monotonic() - started)
    except TimeoutError:
        return Reply(None, seconds=time.monotonic() - started, why="timed out")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        return Reply(None, seconds=time.monotonic() - started, why=type(exc).__name__)
    finally:
        sender.cancel()
        with suppress(asyncio.CancelledError, ConnectionError, OSError):
            await sender
        writer.close()
        with suppress(ConnectionError, OSError):
            await writer.wait_closed()


def multipart_part(boundary: str, name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def post_head(path: str, content_type: str, length: int | None = None) -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"POST {path} HTTP/1.1\r\nHost: hermes\r\nContent-Type: {content_type}\r\n"
        f"{framing}\r\nConnection: close\r\n\r\n"
    ).encode()


@dataclass(frozen=True)
class Target:
    """What the attacks need to know, sent to the attacker's process: the gateway's address,
    the settings it runs with and the honest clips."""

    url: str
    settings: Settings
    jfk: Item
    harvard: Item
    composite: Item


@dataclass(frozen=True)
class Arena(Target):
    """A target, the attacker's address and its HTTP session from there."""

    address: str
    session: aiohttp.ClientSession


def expected_upload_refusal(reply: Reply, codes: tuple[str, ...]) -> bool:
    """A 503 `server_busy` or 429 `too_many_refused_uploads` with Retry-After (a bound
    refused it before its body), or one of `codes` with their documented status."""
    if reply.status in (429, 503):
        busy = "server_busy" if reply.status == 503 else "too_many_refused_uploads"
        return reply.code == busy and reply.retry_after is not None
    return reply.code in codes


# ---- the attacks -----------------------------------------------------------------------------


async def flood_once(
    arena: Arena, payload: bytes, limit: int
) -> tuple[list[dict], int | None, str]:
    """One WebSocket: all of `payload` in frames of `limit` bytes as fast as it goes, `stop`,
    and everything the gateway said until it closed: (messages, close code, how sending
    failed or "")."""
    messages: list[dict] = []
    failed = ""
    async with arena.session.ws_connect(f"{arena.url}/stream-audio", max_msg_size=0) as ws:

        async def read() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                messages.append(json.loads(message.data))

        reader = asyncio.create_task(read())
        try:
            for offset in range(0, len(payload), limit):
                await ws.send_bytes(payload[offset : offset + limit])
            await ws.send_json({"type": "stop"})
        except ConnectionError as exc:  # closed by the gateway: its code says why
            failed = f" while sending ({type(exc).__name__})"
        await asyncio.wait_for(reader, ATTACK_REPLY_TIMEOUT_S)
    return messages, ws.close_code, failed


async def ws_flood(arena: Arena, attack: AttackLog, deadline: float) -> None:
    limit = arena.settings.stream_max_frame_bytes
    payload = pcm16(np.resize(arena.harvard.audio, int(FLOOD_MINUTES * 60 * SAMPLE_RATE)))
    sent_s = len(payload) / 2 / SAMPLE_RATE
    # heard at most: what the buffer holds when `stop` comes, and a step in flight
    bound_s = arena.settings.stream_max_buffer_seconds + WINDOW_SAMPLES / SAMPLE_RATE
    heard: list[float] = []

    async def flood() -> None:
        while time.monotonic() < deadline:
            try:
                messages, code, failed = await flood_once(arena, payload, limit)
            except Exception as exc:
                attack.record(f"flood: {describe(exc)}", False)
                await asyncio.sleep(1.0)
                continue
            skipped = sum(m["end"] - m["start"] for m in messages if m["type"] == "skipped")
            reasons = sorted({m.get("reason", "?") for m in messages if m["type"] == "skipped"})
            done = bool(messages) and messages[-1]["type"] == "done"
            heard.append(sent_s - skipped)
            expected = not failed and done and code == NORMAL_CLOSE and reasons == ["overload"]
            expected = expected and sent_s - skipped <= bound_s
            attack.record(
                f"flood: {'done' if done else 'no done'}, close {code}{failed}, skipped "
                f"({', '.join(reasons) or 'nothing'})",
                expected,
            )

    async def oversize() -> None:
        frame = b"\x00" * (limit + 2)
        while time.monotonic() < deadline:
            try:
                async with arena.session.ws_connect(f"{arena.url}/stream-audio") as ws:
                    await ws.send_bytes(frame)
                    await ws.receive(timeout=30)
                code = ws.close_code
            except Exception as exc:
                attack.record(f"over 1 MiB frame: {describe(exc)}", False)
            else:
                attack.record(f"over 1 MiB frame: close {code}", code == 1009)
            await asyncio.sleep(1.0)

    await asyncio.gather(*(flood() for _ in range(FLOOD_CONNECTIONS)), oversize())
    attack.notes["audio sent per flood s"] = round(sent_s)
    attack.notes["audio the model heard per flood s, max"] = round(max(heard, default=0), 1)
    attack.notes["allowed s"] = round(bound_s)


async def multipart_flood(arena: Arena, attack: AttackLog, deadline: float) -> None:
    boundary = "hostile-soak-boundary"
    content_type = f"multipart/form-data; boundary={boundary}"

    async def one(large: bool) -> None:
        value = b"x" * (MULTIPART_LARGE_FIELD if large else 16)

        async def body(writer: asyncio.StreamWriter) -> None:
            for i in range(MULTIPART_FIELDS):
                part = multipart_part(boundary, f"field{i}", value)
                writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                await writer.drain()
            end = f"--{boundary}--\r\n".encode()
            writer.write(f"{len(end):x}\r\n".encode() + end + b"\r\n0\r\n\r\n")
            await writer.drain()

        while time.monotonic() < deadline:
            reply = await raw_request(
                arena, post_head("/v1/audio/transcriptions", content_type), body
            )
            wanted = ("fields_too_large",) if large else ("too_many_fields",)
            kind = f"{MULTIPART_LARGE_FIELD // 1000} KB" if large else "16 B"
            attack.record(f"{kind} fields: {reply.label()}", expected_upload_refusal(reply, wanted))

    await asyncio.gather(*(one(i % 2 == 1) for i in range(MULTIPART_CONNECTIONS)))


async def slow_bodies(arena: Arena, attack: AttackLog, deadline: float) -> None:
    data = arena.jfk.path.read_bytes()
    head = post_head("/transcribe", "application/octet-stream", len(data))

    async def body(writer: asyncio.StreamWriter) -> None:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1 / SLOW_BYTES_PER_S)

    waits: list[float] = []
    while time.monotonic() < deadline:
        replies = await asyncio.gather(
            *(raw_request(arena, head, body) for _ in range(SLOW_CONNECTIONS))
        )
        for reply in replies:
            attack.record(reply.label(), expected_upload_refusal(reply, ("upload_timeout",)))
            if reply.status == 408:
                waits.append(reply.seconds)
    attack.notes["408 after s, max"] = round(max(waits, default=math.nan), 1)


async def overlong_files(arena: Arena, attack: AttackLog, deadline: float) -> None:
    files = [(HOSTILE_DIR / name).read_bytes() for name in OVERLONG_FILES]
    seconds: list[float] = []

    async def one(data: bytes) -> None:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="hours.flac")
        started = time.monotonic()
        try:
            async with arena.session.post(f"{arena.url}/v1/audio/transcriptions", data=form) as r:
                headers = {name.lower(): value for name, value in r.headers.items()}
                reply = reply_of(r.status, headers, await r.read(), 0.0)
        except Exception as exc:
            attack.record(f"no answer ({describe(exc)})", False)
            return
        seconds.append(time.monotonic() - started)
        attack.record(reply.label(), expected_upload_refusal(reply, ("audio_too_long",)))

    while time.monotonic() < deadline:
        await asyncio.gather(*(one(files[i % len(files)]) for i in range(OVERLONG_UPLOADS)))
    attack.notes["answered after s, max"] = round(max(seconds, default=math.nan), 1)


async def ffmpeg_running(stack: Stack) -> int:
    snapshot = await asyncio.to_thread(
        resources.snapshot, stack.gateway_pid, stack.current_triton_pid()
    )
    return snapshot.ffmpeg


async def hang_ups(arena: Arena, attack: AttackLog, deadline: float) -> None:
    boundary = "hostile-soak-boundary"
    body_bytes = (
        multipart_part(boundary, "file", arena.composite.path.read_bytes(), "composite.wav")
        + f"--{boundary}--\r\n".encode()
    )
    head = post_head(
        "/v1/audio/transcriptions", f"multipart/form-data; boundary={boundary}", len(body_bytes)
    )

    async def body(writer: asyncio.StreamWriter) -> None:
        writer.write(body_bytes)
        await writer.drain()

    hung_up = 0
    while time.monotonic() < deadline:
        replies = await asyncio.gather(
            *(raw_request(arena, head, body, hang_up_after=s) for s in HANGUP_AFTER_S)
        )
        for reply in replies:
            attack.record(reply.label(), reply.why == "hung up")
            hung_up += reply.why == "hung up"
        await asyncio.sleep(HANGUP_WAVE_PAUSE_S)
    attack.notes["uploads hung up"] = hung_up


async def poison(arena: Arena, attack: AttackLog, deadline: float) -> None:
    jfk = arena.jfk.audio[:WINDOW_SAMPLES]
    nan = np.full(SAMPLE_RATE, np.nan, np.float32)
    loud = (jfk * 32767).astype(np.float32)
    options = TranscribeOptions(language="en")
    outputs = [grpcaio.InferRequestedOutput(name) for name in OUTPUTS]
    client = grpcaio.InferenceServerClient(arena.settings.triton_url)

    async def send(kind: str, audio: np.ndarray, priority: Priority) -> None:
        try:
            result = await client.infer(
                MODEL_NAME,
                build_inputs(audio, options, grpcaio.InferInput),
                outputs=outputs,
                priority=int(priority),
                client_timeout=ATTACK_REPLY_TIMEOUT_S,
            )
        except InferenceServerException as exc:
            status = str(exc.status() or "?").removeprefix("StatusCode.")
            message = exc.message() or ""
            said = "NaN" in message if kind == "NaN" else "must lie in [-1, 1]" in message
            attack.record(f"{kind}: {status}", kind != "good window" and said)
            return
        text = parse_outputs(result).text
        if kind != "good window":
            attack.record(f"{kind}: transcribed", False)
            return
        ok = word_error_rate(arena.jfk.text, text) <= WER_MARGIN
        attack.record(f"good window: {'its text' if ok else 'wrong text'}", ok)

    try:
        while time.monotonic() < deadline:
            await asyncio.gather(
                *(send("NaN", nan, Priority(1 + i % 2)) for i in range(POISON_NAN)),
                *(send("int16-scale", loud, Priority(1 + i % 2)) for i in range(POISON_INT16)),
                send("good window", jfk, Priority.FILE),
            )
    finally:
        await client.close()


async def triton_restart(stack: Stack, attack: AttackLog) -> None:
    assert stack.triton is not None and stack.supervisor is not None  # supervised stack
    restarts = stack.supervisor.restarts
    await asyncio.sleep(RESTART_AFTER_S)
    crash(stack.triton)
    killed = time.monotonic()
    log("killed tritonserver; waiting for the supervisor to bring it back")
    ready_after = None
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - killed < RESTART_READY_TIMEOUT_S:
            await asyncio.sleep(0.5)
            try:
                async with session.get(f"{stack.triton_http_url}/v2/health/ready") as reply:
                    if reply.status == 200 and stack.supervisor.restarts > restarts:
                        ready_after = time.monotonic() - killed
                        break
            except aiohttp.ClientError:
                continue
    restarted = stack.supervisor.restarts - restarts
    if ready_after is None:
        attack.record(f"not ready {RESTART_READY_TIMEOUT_S:g} s after the kill", False)
        return
    attack.record(f"restarted ({restarted}), ready again", restarted == 1)
    attack.notes["ready again after s"] = round(ready_after, 1)


ATTACK_FUNCTIONS: dict[str, Callable[[Arena, AttackLog, float], Awaitable[None]]] = {
    "ws-flood": ws_flood,
    "multipart-flood": multipart_flood,
    "slow-bodies": slow_bodies,
    "overlong-files": overlong_files,
    "hang-ups": hang_ups,
    "poison": poison,
}


def attack_from_elsewhere(name: str, target: Target, deadline: float) -> dict[str, Any]:
    """Run the attack `name` until `deadline` (time.monotonic, the same clock in every process)
    in a process of its own, as attackers are not the honest clients: sharing their event
    loop, a flood's sending delayed the honest streams' own frames and inflated the latency
    they measured. The process runs niced: a real attacker's CPU is its own machine's, and
    on these 2 cores building 30 min of PCM or 2,000-field bodies would otherwise be charged
    to the service. What the gateway and Triton spend on the attack is not niced. The
    attack's AttackLog summary."""

    os.nice(ATTACKER_NICENESS)

    async def run() -> dict[str, Any]:
        address = attacker_host(name)
        connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
        timeout = aiohttp.ClientTimeout(total=ATTACK_REPLY_TIMEOUT_S)
        attack = AttackLog()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            arena = Arena(**vars(target), address=address, session=session)
            await ATTACK_FUNCTIONS[name](arena, attack, deadline)
        return attack.summary()

    return asyncio.run(run())


async def attack_in_own_process(
    name: str, target: Target, attack: AttackLog, deadline: float
) -> None:
    """`attack_from_elsewhere` in a fresh process; what it got is added to `attack`."""
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as attacker:
        summary = await loop.run_in_executor(
            attacker, attack_from_elsewhere, name, target, deadline
        )
    attack.got.update(summary["got"])
    attack.unexpected.update(summary["unexpected"])
    attack.notes.update(summary["notes"])


# ---- what it cost ----------------------------------------------------------------------------


class CostMeter:
    """The gateway's and Triton's peak resident memory and CPU seconds while it is open: the
    gateway's peak is its VmHWM (reset on entry) where the kernel allows it, else the highest
    sample; Triton's (tritonserver and its stub, summed) the highest sample, every
    `PEAK_SAMPLE_EVERY_S`. CPU counts ffmpeg children the gateway reaped, and a Triton started
    again during the phase from zero."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.peaks = {"gateway": 0.0, "triton": 0.0}
        self.triton_cpu: dict[int, tuple[float, float]] = {}  # pid: (first seen, last)
        self.hwm = False

    def sample(self) -> None:
        snapshot = resources.snapshot(self.stack.gateway_pid, self.stack.current_triton_pid())
        self.peaks["gateway"] = max(self.peaks["gateway"], snapshot.gateway.rss_mib)
        self.peaks["triton"] = max(self.peaks["triton"], snapshot.triton.rss_mib)
        pid = self.stack.current_triton_pid()
        cpu = resources.cpu_seconds(pid)
        if cpu > 0:
            first = self.triton_cpu.get(pid, (cpu if not self.triton_cpu else 0.0, cpu))[0]
            self.triton_cpu[pid] = (first, cpu)

    @asynccontextmanager
    async def measuring(self) -> AsyncIterator[CostMeter]:
        gateway = self.stack.gateway_pid
        self.hwm = await asyncio.to_thread(resources.reset_peak_rss, gateway)
        gateway_cpu = await asyncio.to_thread(resources.cpu_seconds, gateway)
        await asyncio.to_thread(self.sample)

        async def every() -> None:
            while True:
                await asyncio.sleep(PEAK_SAMPLE_EVERY_S)
                await asyncio.to_thread(self.sample)

        task = asyncio.create_task(every())
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.to_thread(self.sample)
            if self.hwm:
                peak = await asyncio.to_thread(resources.peak_rss_mib, gateway)
                self.peaks["gateway"] = max(self.peaks["gateway"], peak)
            self.gateway_cpu = await asyncio.to_thread(resources.cpu_seconds, gateway) - gateway_cpu

    def summary(self, idle: dict[str, Any]) -> dict[str, Any]:
        return {
            "idle_rss_mib": {name: idle[name]["rss_mib"] for name in ("gateway", "triton")},
            "peak_rss_mib": dict(self.peaks),
            "peak_over_idle_mib": {
                name: self.peaks[name] - idle[name]["rss_mib"] for name in ("gateway", "triton")
            },
            "gateway_peak_from": "VmHWM" if self.hwm else f"samples every {PEAK_SAMPLE_EVERY_S} s",
            "cpu_s": {
                "gateway": self.gateway_cpu,
                "triton": sum(last - first for first, last in self.triton_cpu.values()),
            },
        }


# ---- the honest clients ----------------------------------------------------------------------


def unreported_words(run: StreamRun, reference: FileReference) -> tuple[int, int]:
    """(words of the clip neither in the stream's finals nor inside a stretch it was told was
    skipped, words of the clip): the clip's words are its file-mode transcript's, matched to
    the finals by alignment."""
    reference_words = [word for word, _ in reference.words]
    matcher = difflib.SequenceMatcher(None, reference_words, words_of(run.text), autojunk=False)
    heard = {
        i for block in matcher.get_matching_blocks() for i in range(block.a, block.a + block.size)
    }
    skips = [(m["start"], m["end"]) for _, m in run.messages if m["type"] == "skipped"]
    unreported = [
        i
        for i, (_, end) in enumerate(reference.words)
        if i not in heard
        and not any(start - SKIP_SLACK_S <= end <= stop + SKIP_SLACK_S for start, stop in skips)
    ]
    return len(unreported), len(reference_words)


def stream_lost(run: StreamRun, reference: FileReference) -> str | None:
    """Why the stream lost audio without a word, or None: it ended without `done` and
    without an `error` message, or too many of its words are neither final nor skipped."""
    errors = [m for _, m in run.messages if m["type"] == "error"]
    if run.done_at is None and not errors:
        return f"ended without done or an error message (close {run.close_code})"
    missing, total = unreported_words(run, reference)
    if total and missing / total > LOST_WORDS_FRACTION:
        return f"{missing} of {total} words neither final nor reported skipped"
    return None


def honest_summary(
    runs: list[StreamRun],
    uploads: list[dict],
    ledger: Ledger,
    stream_item: Item,
    reference: FileReference,
) -> dict[str, Any]:
    latencies = [x for run in runs for x in run.final_latencies()]
    # as in the soak: a stream told that audio was skipped is not held to its WER (it heard
    # less); whether it was told, and of all it lost, is what `lost` checks
    stream_wers = [
        word_error_rate(stream_item.text, run.text)
        for run in runs
        if run.done_at is not None and not any(m["type"] == "skipped" for _, m in run.messages)
    ]
    upload_wers = [record["wer"] for record in uploads]
    lost = list(ledger.lost)
    for index, run in enumerate(runs):
        if why := stream_lost(run, reference):
            lost.append(f"stream {index}: {why}")
    return {
        "streams": len(runs),
        "streams_done": sum(run.done_at is not None for run in runs),
        "final_latency_s": service.quantiles(latencies),
        "stream_wer": statistics.mean(stream_wers) if stream_wers else math.nan,
        "uploads": len(uploads),
        "upload_wer": statistics.mean(upload_wers) if upload_wers else math.nan,
        "upload_wall_s": statistics.median([r["wall_s"] for r in uploads]) if uploads else math.nan,
        "wer": statistics.mean(stream_wers + upload_wers)
        if stream_wers + upload_wers
        else math.nan,
        "skipped_s": sum(
            m["end"] - m["start"] for run in runs for _, m in run.messages if m["type"] == "skipped"
        ),
        "errors": list(ledger.errors),
        "refusals": dict(ledger.refusals),
        "lost": lost,
    }


# ---- the verdict (pure: tests/unit/test_hostile_verdict.py) ----------------------------------


def phase_checks(phase: dict[str, Any], baseline: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each rule of a phase's row, with whether it held. Every phase: the attacker got only
    its documented answers (and at least one), no honest work lost without a report, the
    gateway's peak within its bound. Every phase but the Triton restart: no honest error or
    refusal, WER and final latency within tolerance of the baseline. The restart: Triton came
    back, and one round of honest work after it ran clean. The baseline is held to no errors
    (an honest load the service cannot carry alone makes every comparison moot)."""
    attack, honest = phase["attack"], phase["honest"]
    checks = [
        ("lost without a report = 0", not honest["lost"]),
        (
            f"gateway peak ≤ idle + {GATEWAY_PEAK_BOUND_MIB:g} MiB",
            phase["cost"]["peak_over_idle_mib"]["gateway"] <= GATEWAY_PEAK_BOUND_MIB,
        ),
    ]
    if phase["name"] != "baseline":
        checks.insert(
            0,
            (
                "the attacker got only its documented answers",
                bool(attack["got"]) and not attack["unexpected"],
            ),
        )
    if phase["name"] == RESTART:
        after = phase.get("after_recovery") or {}
        clean = bool(after) and not after["errors"] and not after["lost"]
        clean = clean and after["streams_done"] > 0 and after["uploads"] > 0
        checks.append(("after Triton is back: streams and uploads clean", clean))
        return checks
    checks.append(
        ("honest errors and refusals = 0", not honest["errors"] and not honest["refusals"])
    )
    if phase["name"] == "baseline":
        return checks
    base = baseline["honest"]
    latency, base_latency = honest["final_latency_s"], base["final_latency_s"]
    checks += [
        (
            f"honest WER ≤ baseline + {100 * WER_TOLERANCE:g} points",
            honest["wer"] <= base["wer"] + WER_TOLERANCE,
        ),
        (
            f"final p50 and p95 ≤ {LATENCY_FACTOR:g} × baseline + {LATENCY_SLACK_S:g} s",
            within_latency(latency["p50"], base_latency["p50"])
            and within_latency(latency["p95"], base_latency["p95"]),
        ),
    ]
    return checks


def judged(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The phases with their checks and pass/fail; the first is the baseline."""
    baseline = phases[0]
    for phase in phases:
        phase["checks"] = [
            {"rule": rule, "passed": passed} for rule, passed in phase_checks(phase, baseline)
        ]
        phase["passed"] = all(check["passed"] for check in phase["checks"])
    return phases


# ---- the report ------------------------------------------------------------------------------


def outcome_text(attack: dict[str, Any]) -> str:
    parts = [f"{what} ×{n}" for what, n in attack["got"].items()]
    parts += [f"**{what} ×{n}**" for what, n in attack["unexpected"].items()]
    return "; ".join(parts) or "–"


def ratio(value: float, baseline: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.{digits}f} ({baseline:.{digits}f})"


def verdict_row(phase: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    honest, base = phase["honest"], baseline["honest"]
    peak, cpu = phase["cost"]["peak_over_idle_mib"], phase["cost"]["cpu_s"]
    latency, base_latency = honest["final_latency_s"], base["final_latency_s"]
    failed = [check["rule"] for check in phase["checks"] if not check["passed"]]
    expected = (
        "–"
        if phase["name"] == "baseline"
        else ("yes" if not phase["attack"]["unexpected"] else "**no**")
    )
    return [
        phase["name"],
        outcome_text(phase["attack"]) if phase["name"] != "baseline" else "–",
        expected,
        f"{peak['gateway']:+.0f} / {peak['triton']:+.0f}",
        f"{cpu['gateway']:.1f} / {cpu['triton']:.1f}",
        f"{100 * honest['wer']:.1f} % ({100 * base['wer']:.1f} %)",
        f"{honest['skipped_s']:.0f}",
        " / ".join(ratio(latency[q], base_latency[q]) for q in ("p50", "p95")),
        f"{len(honest['errors'])} / {sum(honest['refusals'].values())}",
        str(len(honest["lost"])),
        "pass" if phase["passed"] else "**FAIL**: " + "; ".join(failed),
    ]


def detail_lines(phase: dict[str, Any]) -> list[str]:
    honest, cost = phase["honest"], phase["cost"]
    latency = honest["final_latency_s"]
    lines = [
        f"### {phase['name']}",
        "",
        f"{DESCRIPTIONS[phase['name']]}. Phase {phase['seconds']:.0f} s.",
        "",
        f"- honest: {honest['streams']} streams ({honest['streams_done']} done), final latency "
        f"p50 / p95 / max {latency['p50']:.2f} / {latency['p95']:.2f} / {latency['max']:.2f} s "
        f"over {latency['count']} finals, stream WER {100 * honest['stream_wer']:.1f} %, audio "
        f"skipped {honest['skipped_s']:.1f} s; {honest['uploads']} uploads answered with text, "
        f"WER {100 * honest['upload_wer']:.1f} %, wall median {honest['upload_wall_s']:.1f} s",
        f"- memory: gateway idle {cost['idle_rss_mib']['gateway']:.0f} MiB, peak "
        f"{cost['peak_rss_mib']['gateway']:.0f} ({cost['gateway_peak_from']}); Triton idle "
        f"{cost['idle_rss_mib']['triton']:.0f} MiB, peak {cost['peak_rss_mib']['triton']:.0f}",
    ]
    if phase["inferences"] is not None:
        lines.append(f"- Triton inferences during the phase: {phase['inferences']}")
    if phase["attack"]["notes"]:
        notes = ", ".join(f"{k}: {v}" for k, v in phase["attack"]["notes"].items())
        lines.append(f"- attack: {notes}")
    if honest["refusals"]:
        lines.append(
            "- honest refusals: " + ", ".join(f"{k} ×{n}" for k, n in honest["refusals"].items())
        )
    for what in ("errors", "lost"):
        if honest[what]:
            lines.append(f"- honest {what} ({len(honest[what])}), first 5:")
            lines += [f"  - `{item}`" for item in honest[what][:5]]
    if after := phase.get("after_recovery"):
        lines.append(
            f"- after Triton was back: {after['streams']} streams ({after['streams_done']} done), "
            f"{after['uploads']} uploads with text, {len(after['errors'])} errors, "
            f"{len(after['lost'])} lost, WER {100 * after['wer']:.1f} %"
        )
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    m, config = results["machine"], results["config"]
    v = m["versions"]
    phases = results["phases"]
    baseline = phases[0]
    verdict = "**pass**" if results["passed"] else "**FAIL**"
    parts = [
        f"# hermes hostile soak, {results['date']} on {m['host']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, GPU: {m['gpu']}; Python {v['python']}, "
        f"torch {v['torch']}, tritonserver {v['tritonserver']}, aiohttp {v['aiohttp']}. Model "
        f"tiny.en. Load average at start: {report.load_text(m['load_average_at_start'])}"
        + (report.NOISY_NOTE if results["noisy"] else "")
        + ".",
        "",
        (
            f"Honest load throughout: {config['streams']} real-time streams of "
            f"{config['stream_item']} back to back and {config['uploads']} clients uploading "
            f"{' and '.join(config['upload_items'])} in turn to `/v1/audio/transcriptions`, from "
            f"127.0.0.1; each attack from an address of its own, 127.0.0.{FIRST_ATTACKER_HOST} "
            "on. Each phase starts new work for "
            f"{config['seconds']:g} s (what runs then finishes). The gateway is its own process "
            f"with the shipped defaults but `upload_read_timeout_s` {UPLOAD_READ_TIMEOUT_S:g} s; "
            "Triton runs under the supervisor of `hermes up`."
        ),
        "",
        report.run_summary(results),
        "",
        f"Verdict: {verdict}",
        "",
        (
            f"Tolerances: final latency p50 and p95 ≤ {LATENCY_FACTOR:g} × the baseline's + "
            f"{LATENCY_SLACK_S:g} s; honest WER (uploads, and streams that skipped nothing) ≤ "
            f"the baseline's + {100 * WER_TOLERANCE:g} points; a stream lost words when over "
            f"{100 * LOST_WORDS_FRACTION:g} % of them are neither final nor inside a reported "
            "`skipped`; gateway peak ≤ idle + "
            f"{GATEWAY_PEAK_BOUND_MIB:g} MiB. Idle: the sample before the phase, taken "
            f"{SETTLE_S:g} s after the last connection closed."
        ),
        "",
        report.table(
            [
                "phase",
                "the attacker got",
                "expected",
                "peak over idle MiB, gateway / Triton",
                "CPU s, gateway / Triton",
                "honest WER (baseline)",
                "honest audio skipped s",
                "final p50 / p95 s (baseline)",
                "honest errors / refusals",
                "lost without report",
                "verdict",
            ],
            [verdict_row(phase, baseline) for phase in phases],
        ),
        "",
        "## Phases",
        "",
    ]
    for phase in phases:
        parts += detail_lines(phase)
    return "\n".join(parts) + "\n"


# ---- orchestration ---------------------------------------------------------------------------


async def honest_round(
    stack: Stack,
    items: dict[str, Any],
    args: argparse.Namespace,
    seconds: float,
    ledger: Ledger,
    label: str,
) -> tuple[list[StreamRun], list[dict]]:
    async with own_client(stack) as client:
        runs = await mixed_phase(
            client, items["stream"], items["uploads"], args, seconds, ledger, label
        )
    return runs.streams, runs.uploads


async def run_phase(
    name: str,
    target: Target,
    stack: Stack,
    monitor: Monitor,
    items: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The idle sample, then the honest load for `args.seconds` beside the attack `name`
    (none for the baseline), measured; for the Triton restart, one more round of honest work
    once it is back."""
    idle = await monitor.settled_sample(f"{name}: idle")
    monitor.phase = name
    log(f"{name}: {DESCRIPTIONS[name]}")
    baselines = items["baselines"]
    ledger = Ledger(baselines, faults=() if name == RESTART else FAULTS)
    attack = AttackLog()
    inferences_before, _ = await stack.batch_counts()
    started = time.monotonic()
    deadline = started + args.seconds
    meter = CostMeter(stack)
    async with meter.measuring():
        work: list[Awaitable[Any]] = [honest_round(stack, items, args, args.seconds, ledger, name)]
        if name != "baseline":
            work.append(
                triton_restart(stack, attack)
                if name == RESTART
                else attack_in_own_process(name, target, attack, deadline)
            )
        (runs, uploads), *_ = await asyncio.gather(*work)
        after = None
        if name == RESTART:
            strict = Ledger(baselines)
            after_runs, after_uploads = await honest_round(
                stack, items, args, 0.0, strict, f"{name}, after recovery"
            )
            after = honest_summary(
                after_runs, after_uploads, strict, items["stream"], items["reference"]
            )
    seconds = time.monotonic() - started
    inferences_after, _ = await stack.batch_counts()  # a restarted Triton counts from 0
    phase = {
        "name": name,
        "seconds": seconds,
        "attack": attack.summary(),
        "cost": meter.summary(idle),
        "honest": honest_summary(runs, uploads, ledger, items["stream"], items["reference"]),
        "inferences": None if name == RESTART else inferences_after - inferences_before,
    }
    if after is not None:
        phase["after_recovery"] = after
    return phase


def hang_up_work_check(phases: list[dict[str, Any]], composite_windows: int) -> None:
    """The hang-ups' model windows beyond the baseline's, against what the hung-up uploads
    would have cost whole: an unexpected answer when more than HANGUP_WORK_FRACTION ran."""
    baseline = phases[0]
    for phase in phases:
        if phase["name"] != "hang-ups":
            continue
        hung_up = phase["attack"]["notes"].get("uploads hung up", 0)
        scale = phase["seconds"] / baseline["seconds"]
        extra = phase["inferences"] - baseline["inferences"] * scale
        whole = hung_up * composite_windows
        phase["attack"]["notes"]["model windows beyond the baseline"] = round(extra)
        phase["attack"]["notes"]["windows had they run whole"] = whole
        if whole and extra > HANGUP_WORK_FRACTION * whole:
            phase["attack"]["unexpected"][
                f"work went on: {extra:.0f} windows of {whole} run after the hang-ups"
            ] = 1


async def composite_windows(stack: Stack, item: Item) -> int:
    """How many model requests one whole upload of `item` makes."""
    before, _ = await stack.batch_counts()
    async with own_client(stack) as client:
        await service.upload(client, item)
    after, _ = await stack.batch_counts()
    return after - before


async def phases(stack: Stack, monitor: Monitor, args: argparse.Namespace) -> dict[str, Any]:
    harvard, jfk = clip(HARVARD), clip(JFK)
    composite_item = composite.build(TMP_DIR / "composite.wav").item
    items: dict[str, Any] = {"stream": harvard, "uploads": [harvard, jfk]}
    monitor.phase = "warm-up"
    async with own_client(stack) as client:
        items["baselines"] = await file_mode_baselines(client, [harvard, jfk])
        items["reference"] = await service.file_reference(client, harvard)
    windows = await composite_windows(stack, composite_item)
    log(f"one whole composite upload: {windows} model requests")
    log("warm-up: every honest client once")
    await honest_round(stack, items, args, 0.0, Ledger(items["baselines"]), "warm-up")
    target = Target(stack.gateway_url, stack.settings, jfk, harvard, composite_item)
    results = []
    for name in ["baseline", *args.attacks]:
        results.append(await run_phase(name, target, stack, monitor, items, args))
    end = await monitor.settled_sample("end")
    hang_up_work_check(results, windows)
    return {
        "baselines": items["baselines"],
        "composite_windows": windows,
        "phases": judged(results),
        "end": end,
    }


async def hostile(args: argparse.Namespace) -> dict[str, Any]:
    meter = report.RunMeter()
    defaults = Settings()
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "command": report.command_line("benchmarks.hostile"),
        "config": {
            "seconds": args.seconds,
            "streams": args.streams,
            "uploads": args.uploads,
            "attacks": args.attacks,
            "stream_item": HARVARD,
            "upload_items": [HARVARD, JFK],
            "gateway": "own process (hermes serve), shipped defaults but upload_read_timeout_s",
            "upload_read_timeout_s": UPLOAD_READ_TIMEOUT_S,
        },
    }
    log("starting tritonserver (supervised) and the gateway")
    async with running_stack(
        TMP_DIR,
        separate_gateway=True,
        supervised=True,
        max_audio_seconds=defaults.max_audio_seconds,
        max_streams=defaults.max_streams,
        max_streams_per_client=defaults.max_streams_per_client,
        max_uploads_per_client=defaults.max_uploads_per_client,
        upload_read_timeout_s=UPLOAD_READ_TIMEOUT_S,
    ) as stack:
        results["machine"] = report.machine(await stack.triton_version())
        monitor = Monitor(stack)
        async with monitor.running():
            results.update(await phases(stack, monitor, args))
        meter.check(own_tritonservers=1)
    results.update(meter.end())
    results["passed"] = all(phase["passed"] for phase in results["phases"])
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report.verdict_main(lambda: hostile(args), args.output, "hostile-", markdown)


if __name__ == "__main__":
    sys.exit(main())
