"""`python -m benchmarks.gpu`: the service on a CUDA host, the model in fp16 inside Triton.

Made for a GPU machine that has Python, torch and a driver but no ffmpeg and no package index:
the audio is decoded beforehand on a machine with the project installed
(`python -m benchmarks.gpu --prepare DIR` writes 16 kHz PCM16 `.npy` files, decoded by the
service's own ffmpeg command), and this run reads it from DIR. Everything else is the real
stack: tritonserver from the nvidia-pytriton wheel, the Whisper model on CUDA, the gateway as a
child process, paced WebSocket clients. It measures

- file mode: the gateway's window pipeline (`gateway.modes.files`, as an upload runs it once the
  audio is decoded) against openai-whisper's own `transcribe()` on the same GPU and weights;
- concurrent files: N transcriptions at once, audio seconds per second, Triton's batching and
  how many CPU cores Triton and its model process kept busy;
- streaming capacity: real-time streams on a 1 s beat, more and more of them until final
  latency p95 passes 3 s.

Each is measured with the decoder's CUDA graphs off and on (`--graphs`), each on a stack of
its own (the model's `cuda_graphs` parameter and `max_batch_size`, `--max-batch`, set in a
copy of the repository's config).
On a CPU the same script runs (graphs off: CUDA only), e.g. to check it before a GPU run:
`python -m benchmarks.gpu --audio DIR --graphs off --files 1,2 --streams 1,2 --repeat 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import composite, peers, report, service
from benchmarks.__main__ import SERVICE, file_mode_rows, levels, streaming
from benchmarks.audio import HARVARD, JFK, PREPARED, Item, clip, load_audio, prepared_items
from benchmarks.pipeline import SendTimes, sent_spread, transcribe
from benchmarks.report import TMP_DIR, log
from benchmarks.resources import cpu_seconds
from benchmarks.stack import Stack, running_stack
from benchmarks.triton_trace import Stretch, idle_with_backlog, trace_args
from gateway.backend.triton_pool import TritonPool
from gateway.core.contract import TranscribeOptions
from gateway.tools.local_triton import model_repository_with
from testsupport.wer import word_error_rate

P95_LIMIT_S = 3.0  # streams "keep up" while final latency p95 stays within this
FILE_OPTIONS = TranscribeOptions(language="en", word_timestamps=True)


# ---- preparing the audio (on a machine with ffmpeg) ----------------------------------------


def prepare(directory: Path) -> None:
    """Decode the benchmark's audio to PCM16 `.npy` files and write their reference texts."""
    directory.mkdir(parents=True, exist_ok=True)
    stream = composite.build(TMP_DIR / "stream-63s.wav", composite.STREAM).item
    sources = {"jfk": clip(JFK), "harvard": clip(HARVARD), "stream-63s": stream}
    texts = {}
    for name, item in sources.items():
        samples = np.clip(np.round(load_audio(item.path) * 32768), -32768, 32767).astype("<i2")
        np.save(directory / f"{name}.npy", samples)
        texts[name] = item.text
    (directory / "texts.json").write_text(json.dumps(texts, indent=1) + "\n")


# ---- measuring -----------------------------------------------------------------------------


async def file_mode(pool: TritonPool, stack: Stack, items: list[Item], repeat: int) -> list[dict]:
    import torch  # here, not at the top: --prepare runs without it

    engine = peers.OpenAIWhisper(threads=4, device="cuda" if torch.cuda.is_available() else "cpu")
    warm = items[0].audio
    await transcribe(pool, stack.settings, warm)
    peers.timed(engine, warm)
    results = []
    for item in items:
        audio = item.audio
        runs: dict[str, list[tuple[str, float]]] = {SERVICE: [], engine.name: []}
        for _ in range(repeat):
            text, wall, _ = await transcribe(pool, stack.settings, audio)
            runs[SERVICE].append((text, wall))
            runs[engine.name].append(peers.timed(engine, audio))
        results += file_mode_rows(item, runs)
        log(
            f"{item.name}: "
            + ", ".join(
                f"{name} {statistics.median(t for _, t in r):.3f} s" for name, r in runs.items()
            )
        )
    return results


async def concurrent_files(
    pool: TritonPool, stack: Stack, item: Item, counts: list[int]
) -> list[dict]:
    audio = item.audio
    results = []
    for count in counts:
        batches, phases = await stack.executions(), await stack.model_phases()
        counted = await stack.batch_counts()
        began_ns = time.monotonic_ns()
        started, triton_cpu = time.perf_counter(), cpu_seconds(stack.triton_pid)
        client_cpu, windows = time.process_time(), SendTimes(pool, started)
        done = await asyncio.gather(
            *(transcribe(windows, stack.settings, audio) for _ in range(count))
        )
        wall = time.perf_counter() - started
        triton_cpu = cpu_seconds(stack.triton_pid) - triton_cpu
        client_cpu = time.process_time() - client_cpu
        batches = (await stack.executions()).since(batches)
        # the windows and executions, less the gateway's wake-ups for the batcher
        after = await stack.batch_counts()
        inferences, executions = (now - then for now, then in zip(after, counted, strict=True))
        phases = {
            name: s - phases.get(name, 0.0) for name, s in (await stack.model_phases()).items()
        }
        results.append(
            {
                "item": item.name,
                "uploads": count,
                "wall_s": report.spread([wall]),
                "audio_s_per_s": report.spread([count * item.duration / wall]),
                "inferences": inferences,
                "executions": executions,
                "mean_batch": inferences / max(executions, 1),
                "wer_max": max(word_error_rate(item.text, text) for text, _, _ in done),
                "triton_cpu_cores": triton_cpu / wall,
                # this process: the uploads' voice detection and window pipeline, the client
                "client_cpu_cores": client_cpu / wall,
                "windows_sent_s": windows.spread(),
                "model_busy": batches.seconds / wall,
                "batch_sizes": batches.sizes(),
                "model_phases_s": phases,
                # filled from Triton's trace once the server has stopped (`add_idle_times`)
                "stretch_ns": [began_ns, time.monotonic_ns()],
            }
        )
        log(
            f"{count} concurrent files: {results[-1]['audio_s_per_s']['median']:.1f} audio s/s, "
            f"Triton {results[-1]['triton_cpu_cores']:.2f} CPU cores busy, the model executing "
            f"{results[-1]['model_busy']:.0%} of the time, batches {batches.sizes()}; the "
            f"windows sent {sent_spread(results[-1]['windows_sent_s'])} s after the start, the "
            f"sending side {results[-1]['client_cpu_cores']:.2f} cores busy"
        )
    return results


async def file_reference(pool: TritonPool, stack: Stack, item: Item) -> service.FileReference:
    """`service.file_reference` without an upload: the same window pipeline on the samples."""
    text, _, segments = await transcribe(pool, stack.settings, item.audio, FILE_OPTIONS)
    words = [
        (w, word.end)
        for segment in segments
        for word in segment.words
        for w in service.words_of(word.word)
    ]
    return service.FileReference(words, text)


def gpu_processes() -> str:
    """nvidia-smi's compute processes: proof that the model runs on the GPU."""
    if not shutil.which("nvidia-smi"):
        return "no nvidia-smi on this machine"
    result = subprocess.run(
        [
            "nvidia-smi",
            "--query-compute-apps=pid,process_name,used_memory",
            "--format=csv,noheader",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or result.stderr.strip()


async def stream_capacity(
    stack: Stack, item: Item, counts: list[int], reference: service.FileReference
) -> list[dict]:
    """Levels of streams on the stack's beat, in increasing order, until one passes the
    final-latency p95 limit (that one included: it shows where the limit lies)."""
    levels = []
    for count in sorted(counts):
        levels += await streaming(stack, item, [count], 1, reference)
        if not levels[-1]["final_latency_s"]["p95"] <= P95_LIMIT_S:
            break
    return levels


async def run(args: argparse.Namespace) -> dict[str, Any]:
    items = prepared_items(args.audio)
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "command": report.command_line("benchmarks.gpu"),
        "variants": [],
    }
    started, counters = time.perf_counter(), report.cpu_times()
    limits = {"max_streams": 512, "max_streams_per_client": 512}
    step = args.step
    for graphs in args.graphs:
        log(
            f"starting the stack, CUDA graphs {'on' if graphs else 'off'}, "
            f"streams on a {step:g} s beat"
        )
        overrides = {
            **limits,
            "stream_step_seconds": max(step, 3.0),
            "stream_min_step_seconds": step,
        }
        repository = model_repository_with(
            TMP_DIR / "repositories" / f"graphs-{graphs}-batch-{args.max_batch}",
            {"cuda_graphs": str(graphs).lower()},
            max_batch_size=args.max_batch,
        )
        trace = TMP_DIR / f"gpu-trace-graphs-{graphs}.json"
        trace.unlink(missing_ok=True)
        async with running_stack(
            TMP_DIR,
            separate_gateway=True,
            model_repository=repository,
            triton_args=trace_args(trace),
            **overrides,
        ) as stack:
            results.setdefault("machine", report.machine(await stack.triton_version(), None))
            results.setdefault("gpu_processes", gpu_processes())
            async with stack.triton_pool() as pool:
                if "file_mode" not in results:
                    results["file_mode"] = await file_mode(
                        pool, stack, [items[name] for name in PREPARED], args.repeat
                    )
                throughput = await concurrent_files(pool, stack, items["harvard"], args.files)
                item = items[args.stream_item]
                reference = await file_reference(pool, stack, item)
                levels = await stream_capacity(stack, item, args.streams, reference)
        add_idle_times(trace, throughput)  # the server has stopped and written its trace
        results["variants"].append(
            {
                "cuda_graphs": graphs,
                "max_batch_size": args.max_batch,
                "step_s": step,
                "throughput": throughput,
                "streaming": levels,
            }
        )
    results["total_s"] = time.perf_counter() - started
    results["cpu"] = report.cpu_use(counters, report.cpu_times())
    return results


def add_idle_times(trace: Path, throughput: list[dict]) -> None:
    """Each level's hand-overs with requests waiting, from Triton's trace (`triton_trace`)."""
    for level in throughput:
        idle = idle_with_backlog(trace, Stretch(*level.pop("stretch_ns")))
        level["idle_with_backlog"] = {
            "traced": idle.traced,
            "handovers": len(idle.gaps_s),
            "total_s": idle.total_s,
            "longest_s": idle.longest_s,
            "wake_ups": idle.wake_ups,
            "wake_up_executions": idle.wake_up_executions,
            "described": idle.describe(),
        }


def most_streams(levels: list[dict]) -> str:
    kept = [r["streams"] for r in levels if r["final_latency_s"]["p95"] <= P95_LIMIT_S]
    return str(max(kept)) if kept else "none of those tried"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m["versions"]
    summary, sections = [], []
    for variant in results["variants"]:
        graphs = "on" if variant["cuda_graphs"] else "off"
        most = max(variant["throughput"], key=lambda r: r["uploads"])
        summary.append(
            [
                graphs,
                str(most["uploads"]),
                f"{most['audio_s_per_s']['median']:.1f}",
                f"{most['triton_cpu_cores']:.2f}",
                most_streams(variant["streaming"]),
            ]
        )
        sections += [
            "",
            f"## Concurrent files ({variant['throughput'][0]['item']}), CUDA graphs {graphs}",
            "",
            report.throughput_table(variant["throughput"]),
            "",
            "CPU cores Triton kept busy (tritonserver and the model's process): "
            + ", ".join(
                f"{r['uploads']} uploads {r['triton_cpu_cores']:.2f}" for r in variant["throughput"]
            ),
            "",
            "Share of the wall time the model was executing, its batches (size×executions), "
            "and the seconds it spent in each phase (`hermes_model_phase_seconds_total`): "
            + "; ".join(
                f"{r['uploads']} uploads {r['model_busy']:.0%} ({r['batch_sizes']}; "
                + ", ".join(
                    f"{name} {s:.2f}"
                    for name, s in sorted(r["model_phases_s"].items(), key=lambda p: -p[1])
                    if s >= 0.01
                )
                + ")"
                for r in variant["throughput"]
            ),
            "",
            "The model idle while requests waited, from Triton's trace (hand-overs between "
            "executions with requests queued, and the time between one's end and the next's "
            "start): "
            + "; ".join(
                f"{r['uploads']} uploads {r['idle_with_backlog']['described']}"
                for r in variant["throughput"]
            ),
            "",
            "When the windows went to the model (first / median / last, s after the level "
            "started) and the CPU cores the sending side kept busy (this process: each "
            "upload's voice detection and window pipeline): "
            + "; ".join(
                f"{r['uploads']} uploads {sent_spread(r['windows_sent_s'])} s, "
                f"{r['client_cpu_cores']:.2f} cores"
                for r in variant["throughput"]
            ),
            "",
            (
                f"## Streaming on a {variant['step_s']:g} s beat "
                f"({variant['streaming'][0]['item']}, paced in real time), CUDA graphs {graphs}"
            ),
            "",
            report.streaming_table(variant["streaming"]),
        ]
    parts = [
        f"# hermes on a GPU, {results['date']} on {m['host']}",
        "",
        (
            f"{m['gpu']}; {m['cpu']}, {m['cores']} cores; Python {v['python']}, "
            f"torch {v['torch']}, openai-whisper {v['openai-whisper']}, "
            f"tritonserver {v['tritonserver']}. Model tiny.en "
            "inside Triton (fp16 on CUDA, float32 on a CPU); the peer is openai-whisper's "
            "`transcribe()` on the same device (fp16 on CUDA). Audio decoded beforehand "
            "(`--prepare`), so file times exclude ffmpeg."
        ),
        "",
        f"GPU processes during the run: `{results['gpu_processes']}`",
        "",
        report.run_summary(results),
        "",
        "## Summary",
        "",
        report.table(
            [
                "CUDA graphs",
                "concurrent uploads",
                "audio s per wall s",
                "Triton CPU cores busy",
                f"most streams at final p95 <= {P95_LIMIT_S:g} s",
            ],
            summary,
        ),
        "",
        "## File mode",
        "",
        report.file_mode_table(results["file_mode"]),
        *sections,
    ]
    return "\n".join(parts) + "\n"


def switches(text: str) -> list[bool]:
    values = {"on": True, "off": False}
    try:
        return [values[x] for x in text.split(",")]
    except KeyError as error:
        raise argparse.ArgumentTypeError(f"expected on and/or off, not {error}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prepare", type=Path, help="write the decoded audio here and stop")
    parser.add_argument("--audio", type=Path, help="the directory --prepare wrote")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=levels, default=[1, 16, 64], help="concurrent uploads")
    parser.add_argument(
        "--streams",
        type=levels,
        default=[32, 64, 128, 192],
        help="stream levels, tried in order until final p95 passes 3 s",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=64,
        help="the model's max_batch_size for this run (the committed config: 16)",
    )
    parser.add_argument("--step", type=float, default=1.0, help="the streams' beat, seconds")
    parser.add_argument(
        "--graphs",
        type=switches,
        default=[False, True],
        help="CUDA graphs off and/or on, a stack each (default off,on)",
    )
    parser.add_argument("--stream-item", choices=PREPARED, default="harvard")
    parser.add_argument("--output", type=Path, default=report.RESULTS_DIR)
    args = parser.parse_args(argv)
    if (args.prepare is None) == (args.audio is None):
        parser.error("give either --prepare DIR or --audio DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.prepare:
        prepare(args.prepare)
        return 0
    results = asyncio.run(run(args))
    print(markdown(results))
    json_path, md_path = report.write(results, args.output, prefix="gpu-", render=markdown)
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
