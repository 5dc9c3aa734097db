"""`python -m benchmarks.transport`: how fast the gateway's side carries work to Triton, the
model left out. A real tritonserver serves, under the name `whisper` and with the project's
own config (inputs, dynamic batching, priorities), a stand-in model that takes a fixed time per
execution (`--execution-ms`, none by default), whatever its batch, as a GPU roughly does, and
answers every window with made-up words covering its audio. Three kinds of level:

- `--windows N`: N windows of 30 s at once through `TritonPool`, the client the gateway uses:
  the time until every window was answered, and Triton's executions by batch size;
- `--uploads N`: N transcriptions of Harvard at once through the gateway's file pipeline
  (the real voice detector, windows, the same client): audio seconds per second, when the
  windows went out, and the CPU cores the sending side kept busy;
- `--streams N`: N live streams of the 63.5 s composite on a 1 s beat, paced in real time
  over WebSockets to a gateway process of their own (`hermes serve`): the gateway's CPU per
  second of stream audio, and its event loop's (its main thread), so how many streams one
  gateway process carries before its loop is at a core, how late that loop ran what was due
  (its `hermes_event_loop_lag_seconds`), the finals' latency and the benchmark's own (the
  clients') cores;
- `--realtime N`: N OpenAI Realtime transcription sessions of the same composite, after the
  stream levels and through the same gateway process, each with server VAD and 24 kHz PCM
  appended every 100 ms, as the OpenAI SDK's clients send it: the same costs, how soon each
  turn's `speech_stopped` and `completed` came after the audio that ended the turn, and the
  `error` events (audio not transcribed).

    python -m benchmarks.transport [--windows 1,16,64,128] [--uploads 16,64]
        [--streams 16,48] [--realtime 16,48] [--execution-ms 300] [--max-batch 64]
        [--audio DIR]

`--audio DIR` reads the audio `python -m benchmarks.gpu --prepare DIR` decoded beforehand, on
a host without ffmpeg (a lent GPU machine: `benchmarks.gpu_kit`).

For the question a GPU run raises: do uploads reach the model fast enough to fill its
batches? (1,000 audio seconds per second of Harvard uploads are 56 windows a second.) With
`--execution-ms` near a GPU's time per execution, the upload levels measure the most this
host's sending side can feed a model that fast. And for live streams: on an H200 the gateway
process, not the model, was the limit (one core busy at about 100 streams); the stream levels
measure that ceiling on any host, with no GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from benchmarks import composite, report, resources, service
from benchmarks.__main__ import levels
from benchmarks.audio import HARVARD, Item, clip, prepared_items
from benchmarks.pipeline import ENGLISH, SendTimes, sent_spread, transcribe
from benchmarks.report import TMP_DIR
from benchmarks.stack import (
    Executions,
    LoopLag,
    Stack,
    free_port,
    running_stack,
    settled,
    triton_pool,
)
from benchmarks.triton_trace import Stretch, idle_with_backlog, trace_args
from gateway.backend.triton_pool import TritonPool
from gateway.core.contract import Priority
from gateway.modes.audio import SAMPLE_RATE, WINDOW_SAMPLES
from gateway.server.settings import Settings
from gateway.tools.local_triton import (
    LocalTriton,
    TritonPorts,
    model_repository_with,
)

STREAM_BEAT_S = 1.0

# Whisper's outputs for every request of the batch, after EXECUTION_S: a segment of made-up
# words (three a second, none repeated, each timed) per 5 s of the window's audio, so that the
# file pipeline's checks take the text as it would a real transcript (no window read again),
# and a live stream's steps agree on the words of the audio they share and commit them. An
# execution of the gateway's wake-up requests alone (request parameter `wake_up`) takes no
# time, as in the real model, which decodes nothing for them
STAND_IN_MODEL = """
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

EXECUTION_S = {execution_s!r}


def segments(seconds):
    found, start = [], 0.0
    while start < seconds - 0.05:
        end = min(start + 5.0, seconds)
        first = len(found) * 100
        count = int(3 * (end - start)) + 1
        span = (end - start) / count
        words = [{{"word": f" w{{first + i}}", "start": round(start + i * span, 3),
                  "end": round(start + (i + 1) * span, 3), "probability": 0.9}}
                 for i in range(count)]
        found.append({{"start": start, "end": end, "text": "".join(w["word"] for w in words),
                      "words": words, "avg_logprob": -0.2, "no_speech_prob": 0.01,
                      "compression_ratio": 1.2, "temperature": 0.0}})
        start = end
    return found


class TritonPythonModel:
    def execute(self, requests):
        if not all(json.loads(r.parameters() or "{{}}").get("wake_up") for r in requests):
            time.sleep(EXECUTION_S)
        responses = []
        for request in requests:
            audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy()
            found = segments(audio.shape[-1] / 16000)
            outputs = (
                ("TEXT", "".join(segment["text"] for segment in found)),
                ("SEGMENTS", json.dumps(found)),
                ("LANGUAGE", "en"),
            )
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.array([[value.encode()]], dtype=np.object_))
                for name, value in outputs
            ]))
        return responses
"""


def stand_in_repository(directory: Path, max_batch_size: int, execution_s: float = 0.0) -> Path:
    """The project's `whisper` config beside the stand-in model."""
    shutil.rmtree(directory, ignore_errors=True)
    configured = model_repository_with(directory / "configured", {}, max_batch_size)
    model = directory / "repository" / "whisper"
    (model / "1").mkdir(parents=True)
    shutil.copy(configured / "whisper" / "config.pbtxt", model / "config.pbtxt")
    (model / "1" / "model.py").write_text(STAND_IN_MODEL.format(execution_s=execution_s))
    return directory / "repository"


async def executions(session: aiohttp.ClientSession, triton: LocalTriton) -> Executions:
    async def stats() -> dict:
        async with session.get(f"{triton.http_url}/v2/models/whisper/stats") as reply:
            return await reply.json()

    return Executions.of(await settled(stats))


IDLE_HEADER = "the model idle while requests waited (Triton's trace)"
# A level's table row, and the stretch of time it ran (for Triton's trace, read at the end)
Level = tuple[list[str], Stretch]


async def measure_windows(
    client: TritonPool, session: aiohttp.ClientSession, triton: LocalTriton, counts: list[int]
) -> list[Level]:
    window = (np.random.default_rng(0).standard_normal(WINDOW_SAMPLES) * 0.1).astype(np.float32)
    rows = []
    for count in counts:
        before = await executions(session, triton)
        started, began_ns = time.perf_counter(), time.monotonic_ns()
        await asyncio.gather(
            *(client.transcribe(window, ENGLISH, priority=Priority.FILE) for _ in range(count))
        )
        wall = time.perf_counter() - started
        batches = (await executions(session, triton)).since(before)
        megabytes = count * window.nbytes / 1e6
        row = [str(count), f"{wall:.3f}", f"{count / wall:.0f}", f"{megabytes / wall:.0f}"]
        rows.append((row + [batches.sizes()], Stretch(began_ns, time.monotonic_ns())))
        report.log(f"{count} windows: answered after {wall:.3f} s ({batches.sizes()})")
    return rows


async def measure_uploads(
    client: TritonPool,
    session: aiohttp.ClientSession,
    triton: LocalTriton,
    item: Item,
    counts: list[int],
) -> list[Level]:
    settings = Settings(triton_url=triton.grpc_url)
    audio = item.audio
    await transcribe(client, settings, audio)  # the detector's session made
    rows = []
    for count in counts:
        before = await executions(session, triton)
        started, client_cpu = time.perf_counter(), time.process_time()
        began_ns, windows = time.monotonic_ns(), SendTimes(client, started)
        await asyncio.gather(*(transcribe(windows, settings, audio) for _ in range(count)))
        wall = time.perf_counter() - started
        cores = (time.process_time() - client_cpu) / wall
        batches = (await executions(session, triton)).since(before)
        sent = sent_spread(windows.spread())
        row = [str(count), f"{wall:.2f}", f"{count * item.duration / wall:.0f}", sent]
        rows.append(
            (row + [f"{cores:.2f}", batches.sizes()], Stretch(began_ns, time.monotonic_ns()))
        )
        report.log(
            f"{count} uploads: done after {wall:.2f} s, windows sent {sent} s, "
            f"{cores:.2f} cores busy ({batches.sizes()})"
        )
    return rows


def _p50_p95(values: list[float]) -> str:
    found = service.quantiles(values)
    return f"{found['p50']:.2f} / {found['p95']:.2f}"


def _stream_latencies(runs: Sequence[service.StreamRun]) -> list[str]:
    finals = [x for run in runs for x in run.final_latencies()]
    return [_p50_p95(finals), f"{max(run.tail_s for run in runs):.1f}"]


def _realtime_latencies(runs: Sequence[service.RealtimeRun]) -> list[str]:
    stops = [x for run in runs for x in run.stop_latencies()]
    completions = [x for run in runs for x in run.completion_latencies()]
    errors = sum(e["type"] == "error" for run in runs for _, e in run.events)
    return [
        str(sum(run.turns for run in runs)),
        _p50_p95(stops),
        _p50_p95(completions),
        f"{max(run.tail_s for run in runs):.1f}",
        str(errors),
    ]


@dataclass(frozen=True)
class LiveClients:
    """One kind of live client of the gateway, and what its levels report beside the
    gateway's cost."""

    name: str
    connect: Callable[[Stack, Item, int], Awaitable[Sequence[Any]]]
    latency_headers: tuple[str, ...]
    latencies: Callable[[Any], list[str]]


STREAMS = LiveClients(
    "live streams on /stream-audio",
    service.concurrent_streams,
    ("finals p50 / p95 s", "most behind at the end s"),
    _stream_latencies,
)
REALTIME = LiveClients(
    "Realtime sessions (server VAD, 24 kHz PCM in 100 ms appends)",
    service.concurrent_realtime,
    (
        "turns transcribed",
        "speech_stopped after its audio p50 / p95 s",
        "completed after the stop's audio p50 / p95 s",
        "last completed after the clip's end s",
        "error events",
    ),
    _realtime_latencies,
)
GATEWAY_HEADERS = (
    "the gateway's CPU cores busy",
    "its CPU ms per stream-second",
    "of which its event loop's",
    "streams per event loop core",
    "its event loop's lag mean / p95 ms",
)


async def measure_level(stack: Stack, item: Item, clients: LiveClients, count: int) -> list[str]:
    """`count` clients of one kind at once: the gateway process's CPU in all and in its
    event loop, the loop's lag, the clients' latencies, and the benchmark's own cores."""
    gateway_before = resources.cpu_seconds(stack.gateway_pid)
    loop_before = resources.main_thread_cpu_seconds(stack.gateway_pid)
    lag_before = await stack.gateway_loop_lag()
    started, clients_before = time.perf_counter(), time.process_time()
    runs = await clients.connect(stack, item, count)
    wall = time.perf_counter() - started
    gateway = resources.cpu_seconds(stack.gateway_pid) - gateway_before
    loop = resources.main_thread_cpu_seconds(stack.gateway_pid) - loop_before
    lag_ms = LoopLag.between(lag_before, await stack.gateway_loop_lag()) or "–"
    own_cores = (time.process_time() - clients_before) / wall
    per_stream_ms = 1000 * gateway / (count * item.duration)
    loop_ms = 1000 * loop / (count * item.duration)
    latencies = clients.latencies(runs)
    report.log(
        f"{count} {clients.name}: the gateway {gateway / wall:.2f} cores busy, "
        f"{per_stream_ms:.2f} ms per stream-second ({loop_ms:.2f} in its event loop, "
        f"lag mean / p95 {lag_ms} ms); "
        + ", ".join(f"{h} {v}" for h, v in zip(clients.latency_headers, latencies, strict=True))
        + f"; the clients {own_cores:.2f} cores"
    )
    return [
        str(count),
        f"{gateway / wall:.2f}",
        f"{per_stream_ms:.2f}",
        f"{loop_ms:.2f}",
        f"{1000 / loop_ms:.0f}",
        lag_ms,
        *latencies,
        f"{own_cores:.2f}",
    ]


async def measure_live(
    repository: Path, item: Item, levels: list[tuple[LiveClients, list[int]]]
) -> list[tuple[LiveClients, list[list[str]]]]:
    """Levels of each kind of live client on a 1 s beat, through one gateway process of
    their own, one level after another."""
    most = max(max(counts, default=0) for _, counts in levels)
    async with running_stack(
        TMP_DIR / "transport-streams",
        separate_gateway=True,
        model_repository=repository,
        stream_step_seconds=3.0,
        stream_min_step_seconds=STREAM_BEAT_S,
        max_streams=most,
        max_streams_per_client=most,
    ) as stack:
        return [
            (clients, [await measure_level(stack, item, clients, count) for count in counts])
            for clients, counts in levels
            if counts
        ]


def upload_item(prepared: Path | None) -> Item:
    """Harvard (35.5 s), decoded here or as `benchmarks.gpu --prepare` wrote it to `prepared`
    (a host without ffmpeg)."""
    return prepared_items(prepared)["harvard"] if prepared else clip(HARVARD)


def stream_item(prepared: Path | None) -> Item:
    """The 63.5 s composite the live levels stream, built here or as `--prepare` wrote it."""
    if prepared:
        return prepared_items(prepared)["stream-63s"]
    return composite.build(TMP_DIR / "stream-63s.wav", composite.STREAM).item


async def run(args: argparse.Namespace) -> str:
    execution_s = args.execution_ms / 1000
    repository = stand_in_repository(TMP_DIR / "transport", args.max_batch, execution_s)
    ports = TritonPorts(free_port(), free_port(), free_port())
    trace = TMP_DIR / "transport-trace.json"
    trace.unlink(missing_ok=True)
    triton = LocalTriton(
        model_repository=repository,
        ports=ports,
        log_path=TMP_DIR / "transport-triton.log",
        extra_args=trace_args(trace),
    )
    await asyncio.to_thread(triton.__enter__)
    try:
        async with (
            triton_pool(Settings(triton_url=triton.grpc_url)) as client,
            aiohttp.ClientSession() as session,
        ):
            await client.transcribe(
                np.zeros(SAMPLE_RATE, np.float32), ENGLISH, priority=Priority.FILE
            )
            window_levels = await measure_windows(client, session, triton, args.windows)
            upload_levels = (
                await measure_uploads(
                    client, session, triton, upload_item(args.audio), args.uploads
                )
                if args.uploads
                else []
            )
    finally:
        await asyncio.to_thread(triton.stop)  # which writes the trace
    windows, uploads = (
        [row + [idle_with_backlog(trace, stretch).describe()] for row, stretch in levels]
        for levels in (window_levels, upload_levels)
    )
    live = (
        await measure_live(
            repository,
            stream_item(args.audio),
            [(STREAMS, args.streams), (REALTIME, args.realtime)],
        )
        if args.streams or args.realtime
        else []
    )
    executing = f"the stand-in model {args.execution_ms:g} ms per execution"
    tables = []
    if windows:
        tables.append(
            report.table(
                [
                    f"windows of 30 s at once ({executing})",
                    "all answered after s",
                    "windows per s",
                    "MB per s",
                    "Triton's executions (batch size×count)",
                    IDLE_HEADER,
                ],
                windows,
            )
        )
    if uploads:
        tables.append(
            report.table(
                [
                    f"Harvard uploads at once ({executing})",
                    "all done after s",
                    "audio s per s",
                    "windows sent after s: first / median / last",
                    "sending side's CPU cores busy",
                    "Triton's executions (batch size×count)",
                    IDLE_HEADER,
                ],
                uploads,
            )
        )
    for clients, rows in live:
        title = f"{clients.name}, {STREAM_BEAT_S:g} s beat ({executing})"
        headers = [title, *GATEWAY_HEADERS, *clients.latency_headers, "the clients' cores busy"]
        tables.append(report.table(headers, rows))
    return "\n\n".join(tables)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transport",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--windows",
        type=levels,
        default=[1, 16, 64, 128],
        help="levels of windows at once, one after another (default 1,16,64,128; '' for none)",
    )
    parser.add_argument(
        "--uploads",
        type=levels,
        default=[],
        help="levels of Harvard uploads at once through the file pipeline (default none)",
    )
    parser.add_argument(
        "--streams",
        type=levels,
        default=[],
        help="levels of live streams on a 1 s beat through a gateway process (default none)",
    )
    parser.add_argument(
        "--realtime",
        type=levels,
        default=[],
        help="levels of OpenAI Realtime transcription sessions with server VAD, after the "
        "stream levels, through the same gateway process (default none)",
    )
    parser.add_argument(
        "--execution-ms",
        type=float,
        default=0.0,
        help="how long the stand-in model takes per execution, whatever its batch (default 0)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=64, help="the config's max_batch_size (default 64)"
    )
    parser.add_argument(
        "--audio",
        type=Path,
        help="the directory `python -m benchmarks.gpu --prepare` wrote, for a host without "
        "ffmpeg (default: the clips decoded here)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(asyncio.run(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
