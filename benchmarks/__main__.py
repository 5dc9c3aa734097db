"""`python -m benchmarks`: start the real stack, measure it and its peers side by side, print
markdown tables and write them (with JSON) under benchmarks/results/."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import accuracy, composite, peers, plot, report, service, whisperlive
from benchmarks.audio import HARVARD, JFK, Item, clip
from benchmarks.report import RESULTS_DIR, TMP_DIR, log
from benchmarks.stack import LoopLag, Stack, running_stack
from gateway.tools.local_triton import DEFAULT_MODEL_REPOSITORY, model_repository_with
from testsupport.wer import word_error_rate

SERVICE = "hermes service"
HERMES_3S = "hermes, 3 s beat"
HERMES_1S = "hermes, 1 s beat"
WHISPERLIVE = "WhisperLive"


SECTIONS = ["files", "accuracy", "streaming", "throughput"]


def levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of each short item (default 3)"
    )
    parser.add_argument(
        "--composite-repeat", type=int, default=1, help="runs of the composite (default 1)"
    )
    parser.add_argument(
        "--stream-repeat",
        type=int,
        default=None,
        help="runs of each streaming level (default: --repeat, at most 2)",
    )
    parser.add_argument(
        "--streams",
        type=levels,
        default=None,
        help="default 1,4,8 (--full: 1,2,4,8,16; '' for none)",
    )
    parser.add_argument(
        "--fast-streams",
        type=levels,
        default=None,
        help="levels measured on a 1 s beat too (default 1,4; '' for none)",
    )
    parser.add_argument(
        "--peer-stream-levels",
        type=levels,
        default=None,
        help="WhisperLive's levels (default 1,4; --full: those of --streams)",
    )
    parser.add_argument(
        "--no-peer-streams",
        dest="peer_streams",
        action="store_false",
        help="stream to hermes only, not to WhisperLive",
    )
    parser.add_argument(
        "--uploads", type=levels, default=None, help="default 1,4,8 (--full: 1,2,4,8; '' for none)"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads of every peer (default 2)")
    parser.add_argument("--no-composite", action="store_true")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 repetition, no composite, 1–2 streams and uploads; "
        "results go to benchmarks/results/tmp/",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full grid: every accuracy condition, 1-16 streams twice, "
        "WhisperLive at every level (about 75 min on 2 cores; the default "
        "takes under 30)",
    )
    parser.add_argument(
        "--model-parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="serve the model with this config parameter set otherwise, e.g. "
        "low_latency_bfloat16=false for the float32 path (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=None, help="results directory")
    args = parser.parse_args(argv)
    if args.quick and args.full:
        parser.error("--quick and --full contradict each other")
    quick, full = args.quick, args.full  # they change the defaults; explicit flags still win
    args.repeat = args.repeat or (1 if quick else 3)
    if args.streams is None:  # '' measures none, as for --fast-streams
        args.streams = [1, 2] if quick else [1, 2, 4, 8, 16] if full else [1, 4, 8]
    if args.fast_streams is None:
        args.fast_streams = [1] if quick else [1, 4]
    if args.peer_stream_levels is None:
        args.peer_stream_levels = args.streams if full else [n for n in args.streams if n <= 4]
    if args.uploads is None:
        args.uploads = [1, 2] if quick else [1, 2, 4, 8] if full else [1, 4, 8]
    args.no_composite = args.no_composite or quick
    args.conditions = accuracy.QUICK if quick else accuracy.CONDITIONS if full else accuracy.DEFAULT
    if args.stream_repeat is None:
        args.stream_repeat = min(args.repeat, 2 if full else 1)
    if args.output is None:
        args.output = TMP_DIR if args.quick else RESULTS_DIR
    args.only = set(args.only or SECTIONS)
    try:
        args.model_parameters = dict(item.split("=", 1) for item in args.model_parameter)
    except ValueError:
        parser.error("--model-parameter takes KEY=VALUE")
    return args


def model_repository(parameters: dict[str, str]) -> Path:
    """The repository the run's Triton serves: the project's, or a copy of its config with
    `--model-parameter` values (refused if the model has no such parameter)."""
    if not parameters:
        return DEFAULT_MODEL_REPOSITORY
    return model_repository_with(TMP_DIR / "repositories" / "parameters", parameters)


# ---- file mode -----------------------------------------------------------------------------


async def file_mode(stack: Stack, items: list[tuple[Item, int]], threads: int) -> list[dict]:
    log("loading the peers")
    engines = peers.engines(threads)
    warm = clip(JFK)
    await service.upload(stack, warm)
    for engine in engines:
        peers.timed(engine, warm.audio)
    results = []
    for item, repeat in items:
        audio = item.audio
        runs: dict[str, list[tuple[str, float]]] = {SERVICE: [], **{e.name: [] for e in engines}}
        counts = [0, 0]  # Triton's inferences and executions for the service's uploads
        for rep in range(repeat):  # interleaved: drift on a noisy machine hits every engine alike
            before = await stack.batch_counts()
            runs[SERVICE].append(await service.upload(stack, item))
            for engine in engines:
                runs[engine.name].append(peers.timed(engine, audio))
            # read after the peers: Triton counts an execution after its responses are sent,
            # and read at once the last one was often missed (a file's "0 / 0", the next's more)
            after = await stack.batch_counts()
            counts = [counts[0] + after[0] - before[0], counts[1] + after[1] - before[1]]
            log(
                f"{item.name} run {rep + 1}/{repeat}: "
                + ", ".join(f"{name} {r[-1][1]:.2f} s" for name, r in runs.items())
            )
        rows = file_mode_rows(item, runs)
        rows[0] |= {"inferences": counts[0] / repeat, "executions": counts[1] / repeat}
        results += rows
    return results


def file_mode_rows(item: Item, runs: dict[str, list[tuple[str, float]]]) -> list[dict]:
    """One row of the file-mode table per engine, from its runs' (text, wall s); the service's
    runs are under `SERVICE`."""
    service_median = statistics.median(t for _, t in runs[SERVICE])
    rows = []
    for name, done in runs.items():
        walls = [t for _, t in done]
        wers = [word_error_rate(item.text, text) for text, _ in done]
        rows.append(
            {
                "item": item.name,
                "duration_s": item.duration,
                "engine": name,
                "wall_s": report.spread(walls),
                "rtf": statistics.median(walls) / item.duration,
                "wer": statistics.median(wers),
                "wer_runs": wers,
                "service_over_peer": service_median / statistics.median(walls),
                "text": done[0][0],
            }
        )
    return rows


# ---- throughput ----------------------------------------------------------------------------


async def throughput(stack: Stack, item: Item, counts: list[int], repeat: int) -> list[dict]:
    results = []
    await service.upload(stack, item)  # warm
    for count in counts:
        runs = [await service.concurrent_uploads(stack, item, count) for _ in range(repeat)]
        inferences = sum(r.inferences for r in runs)
        executions = sum(r.executions for r in runs)
        results.append(
            {
                "item": item.name,
                "uploads": count,
                "wall_s": report.spread([r.wall_s for r in runs]),
                "audio_s_per_s": report.spread([r.audio_s / r.wall_s for r in runs]),
                "inferences": inferences,
                "executions": executions,
                "mean_batch": inferences / max(executions, 1),
                "wer_max": max(word_error_rate(item.text, t) for r in runs for t in r.texts),
            }
        )
        log(
            f"throughput {count} uploads: {results[-1]['audio_s_per_s']['median']:.1f} audio s/s, "
            f"mean batch {results[-1]['mean_batch']:.2f}"
        )
    return results


# ---- streaming -----------------------------------------------------------------------------


async def streaming(
    stack: Stack,
    item: Item,
    counts: list[int],
    repeat: int,
    reference: service.FileReference,
    label: str = SERVICE,
) -> list[dict]:
    """`count` concurrent real-time streams of `item` to hermes, `repeat` times for each count."""
    results = []
    for count in counts:
        runs: list[service.StreamRun] = []
        started, cpu_before = time.perf_counter(), stack.cpu_seconds_by_process()
        loop_before = stack.gateway_loop_cpu_seconds()
        lag_before = await stack.gateway_loop_lag()
        inferences, executions = await stack.batch_counts()
        for rep in range(repeat):
            runs += await service.concurrent_streams(stack, item, count)
            log_level(label, count, rep, repeat, runs[-count:])
        wall = time.perf_counter() - started
        cpu = {
            name: seconds - cpu_before[name]
            for name, seconds in stack.cpu_seconds_by_process().items()
        }
        loop_after = stack.gateway_loop_cpu_seconds()
        lag_after = await stack.gateway_loop_lag()
        after_inferences, after_executions = await stack.batch_counts()
        results.append(
            summarise_streams(item, count, repeat, runs, reference)
            | {
                "cpu_s_per_audio_s": sum(cpu.values()) / (len(runs) * item.duration),
                "cores_busy": {name: seconds / wall for name, seconds in cpu.items()},
                "inferences": after_inferences - inferences,
                "executions": after_executions - executions,
            }
            | (
                {}
                if loop_before is None or loop_after is None
                else {"gateway_loop_cores_busy": (loop_after - loop_before) / wall}
            )
            | (
                {}
                if (lag := LoopLag.between(lag_before, lag_after)) is None
                else {"gateway_loop_lag": lag}
            )
        )
    return results


async def peer_streaming(
    item: Item, counts: list[int], repeat: int, reference: service.FileReference, threads: int
) -> list[dict]:
    """The same levels against WhisperLive, with hermes stopped."""
    results = []
    log_path = TMP_DIR / "whisperlive.log"
    async with whisperlive.whisperlive_server(
        threads=threads, max_clients=max(counts), log_path=log_path
    ) as server:
        for count in counts:
            runs: list[service.StreamRun] = []
            cpu_before = server.cpu_seconds()
            for rep in range(repeat):
                runs += await whisperlive.concurrent_streams(server, item, count)
                log_level(WHISPERLIVE, count, rep, repeat, runs[-count:])
            cpu = server.cpu_seconds() - cpu_before
            results.append(
                summarise_streams(item, count, repeat, runs, reference)
                | {"cpu_s_per_audio_s": cpu / (len(runs) * item.duration)}
            )
    return results


def log_level(
    system: str, count: int, rep: int, repeat: int, runs: list[service.StreamRun]
) -> None:
    log(
        f"{system}: {count} streams, run {rep + 1}/{repeat}: tails "
        + ", ".join(f"{r.tail_s:.1f}" for r in runs)
        + " s"
    )


def summarise_streams(
    item: Item,
    count: int,
    repeat: int,
    runs: list[service.StreamRun],
    reference: service.FileReference,
) -> dict[str, Any]:
    """One row of the streaming table: latencies, texts and lag of one level's runs."""
    finals = [x for r in runs for x in r.final_latencies()]
    shown, final_words = [], []
    for r in runs:
        s, f = r.word_latencies(reference.words)
        shown += s
        final_words += f
    tails = [r.tail_s for r in runs]
    return {
        "item": item.name,
        "duration_s": item.duration,
        "streams": count,
        "repeat": repeat,
        "samples": {"streams": len(runs), "finals": len(finals), "words": len(final_words)},
        "final_latency_s": service.quantiles(finals),
        "word_final_latency_s": service.quantiles(final_words),
        "word_shown_latency_s": service.quantiles(shown),
        "wer": report.spread([word_error_rate(item.text, r.text) for r in runs]),
        "wer_vs_file": report.spread([word_error_rate(reference.text, r.text) for r in runs]),
        "file_mode_wer": word_error_rate(item.text, reference.text),
        "tail_s": report.spread(tails),
        "kept_up": max(tails) <= service.KEPT_UP_TAIL_S,
        "texts": [r.text for r in runs],
        "slowest_finals": service.slowest_finals(runs),
    }


async def streaming_section(args: argparse.Namespace, repository: Path) -> dict[str, Any]:
    """hermes on its default 3 s beat and on a 1 s beat, then WhisperLive, one at a time on
    this machine, all streaming the 63.5 s composite of speech and pauses."""
    item = composite.build(TMP_DIR / "stream-63s.wav", composite.STREAM).item
    section: dict[str, Any] = {
        "item": item.name,
        "duration_s": item.duration,
        "repeat": args.stream_repeat,
        "levels": {},
    }
    reference = None
    for label, step, counts in (
        (HERMES_3S, 3.0, args.streams),
        (HERMES_1S, 1.0, args.fast_streams),
    ):
        if not counts:
            continue
        log(f"starting the stack for {label}")
        async with running_stack(
            TMP_DIR,
            separate_gateway=True,
            stream_min_step_seconds=step,
            model_repository=repository,
        ) as stack:
            reference = reference or await service.file_reference(stack, item)
            section["levels"][label] = await streaming(
                stack, item, counts, args.stream_repeat, reference, label
            )
    if args.peer_streams and args.peer_stream_levels and reference is not None:
        section["levels"][WHISPERLIVE] = await peer_streaming(
            item, args.peer_stream_levels, args.stream_repeat, reference, args.threads
        )
    return section


# ---- orchestration -------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    meter = report.RunMeter()
    repository = model_repository(args.model_parameters)  # an unknown parameter fails here
    jfk, harvard = clip(JFK), clip(HARVARD)
    items = [(jfk, args.repeat), (harvard, args.repeat)]
    if not args.no_composite and "files" in args.only:
        built = composite.build(TMP_DIR / "composite.wav")
        items.append((built.item, args.composite_repeat))
        log(f"composite: {built.duration:.1f} s, {built.speech_seconds:.1f} s of clips")
        # speech as meetings and calls have it, and speech without long pauses
        for plan in ("conversation", "continuous-0.5"):
            items.append((accuracy.item_of(accuracy.Condition(plan, plan)), args.composite_repeat))
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "command": report.command_line(),
    }
    log("starting tritonserver and the gateway")
    async with running_stack(TMP_DIR, model_repository=repository) as stack:
        results["machine"] = report.machine(await stack.triton_version(), args.threads)
        log(f"stack up in {time.perf_counter() - meter.started:.0f} s")
        if "files" in args.only:
            results["file_mode"] = await file_mode(stack, items, args.threads)
            meter.check(own_tritonservers=1)
        if "accuracy" in args.only:
            results["accuracy"] = await accuracy.accuracy(stack, args.conditions, args.threads)
            meter.check(own_tritonservers=1)
        if "throughput" in args.only:
            results["throughput"] = await throughput(stack, harvard, args.uploads, args.repeat)
            meter.check(own_tritonservers=1)
    if "streaming" in args.only:
        results["streaming"] = await streaming_section(args, repository)
        meter.check(own_tritonservers=0)
    results.update(meter.end())
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args))
    if section := results.get("streaming"):
        section["plot"] = report.file_stem(results) + ".png"
        plot.latency_against_streams(section, args.output / section["plot"])
    json_path, md_path = report.write(results, args.output)
    print(report.markdown(results))
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
