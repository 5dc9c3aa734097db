"""`python -m benchmarks.soak`: live streams, OpenAI Realtime sessions and long uploads (some
asking who spoke when) together for a set time on the real stack, on loopback; unexpected
errors, streaming latency under that load against the same streams alone, the gateway's and
Triton's memory and descriptors, ffmpeg processes left; a verdict (exit status 1 on fail) and a
report under benchmarks/results/."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from benchmarks import composite, report, resources, service
from benchmarks.audio import HARVARD, Item, clip
from benchmarks.report import RESULTS_DIR, TMP_DIR, log
from benchmarks.service import RealtimeRun, StreamRun
from benchmarks.stack import Stack, running_stack
from gateway.core.contract import TranscribeOptions
from gateway.modes.audio import WINDOW_SAMPLES
from testsupport.wer import word_error_rate

WER_MARGIN = 0.10  # a transcript this far (absolute) above its file-mode WER is an error
RSS_GROWTH_FRACTION = 0.10  # memory is flat when it grew by at most the larger of these
RSS_GROWTH_MIB = 50.0
FD_SLACK = 4  # descriptors are flat when at most this many more are open at the end
SAMPLE_EVERY_S = 10.0
# After the clients disconnect, before the start and end samples: longer than the gateway's
# heap trim interval (10 s) and the model's idle trim (1 s), so both samples show what the
# processes hold at rest, not what the last requests were still freeing.
SETTLE_S = 12.0
OPERATION_TIMEOUT_S = 600.0  # an upload taking longer is an error (streams: service.stream's)
RETRY_PAUSE_S = 3.0  # a client pauses this long after an error, so a broken service is not hammered
ERRORS_SHOWN = 5
OVERLOAD_STATUSES = (429, 503)  # with Retry-After: the documented "busy, come back later"
Live = TypeVar("Live", StreamRun, RealtimeRun)  # one live client's session
FAULTS = ("model_unavailable",)  # a 503 or a skip for this is a fault: Triton runs throughout
NORMAL_CLOSE, TRY_AGAIN_LATER = 1000, 1013  # WebSocket close codes: done; too many streams
# Final latency on 2 shared cores moves by a second or two from one minute to the next with
# nothing changed (the beat is 3 s; one late step puts every stream's finals a step later), so
# a latency holds when its p50 and p95 stay within 1.5x those it is compared with plus 1 s.
LATENCY_FACTOR = 1.5
LATENCY_SLACK_S = 1.0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument(
        "--minutes", type=positive_float, default=5.0, help="length of the mixed phase (default 5)"
    )
    parser.add_argument(
        "--streams", type=positive_int, default=3, help="concurrent real-time streams (default 3)"
    )
    parser.add_argument(
        "--uploads", type=positive_int, default=2, help="clients uploading back to back (default 2)"
    )
    parser.add_argument(
        "--realtime",
        type=non_negative_int,
        default=1,
        help="OpenAI Realtime transcription sessions back to back, beside the streams (default 1)",
    )
    parser.add_argument(
        "--diarized",
        type=non_negative_int,
        default=1,
        help="clients uploading back to back with response_format=diarized_json, beside the "
        "others (default 1)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="results directory")
    return parser.parse_args(argv)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---- outcomes --------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients met, judged as it comes: unexpected errors and expected refusals.
    `lost` are the errors where work vanished without a documented answer: an upload with no
    reply or a reply not in OpenAI's error shape, a transcript short of its words without a
    `skipped`. `faults` are the error codes and skip reasons that count as errors, not as
    refusals (the hostile soak's Triton restart expects them)."""

    baselines: dict[str, float]  # file-mode WER of each item, from the warm-up
    errors: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    faults: tuple[str, ...] = FAULTS

    def error(self, where: str, what: str) -> None:
        self.errors.append(f"{where}: {what}")
        log(f"unexpected: {where}: {what}")

    def lose(self, where: str, what: str) -> None:
        """An error that also lost work without saying so."""
        self.error(where, what)
        self.lost.append(f"{where}: {what}")

    def refused(self, kind: str) -> None:
        self.refusals[kind] += 1

    def check_wer(self, where: str, item: Item, text: str) -> float:
        wer = word_error_rate(item.text, text)
        baseline = self.baselines[item.name]
        if wer > baseline + WER_MARGIN:
            self.lose(where, f"WER {100 * wer:.1f} % against {100 * baseline:.1f} % in file mode")
        return wer


def judge_stream(run: StreamRun, item: Item, ledger: Ledger, where: str) -> None:
    """`error` messages, skips for a fault and abnormal ends are errors; skipped audio under
    overload and 1013 are refusals. A stream that skipped audio is not held to the WER rule:
    it never transcribed all of it."""
    skipped = [m for _, m in run.messages if m["type"] == "skipped"]
    for _, message in run.messages:
        if message["type"] == "error":
            ledger.error(where, f"error message {message.get('message')!r}")
    for message in skipped:
        reason = message.get("reason", "?")
        if reason in ledger.faults:
            ledger.error(where, f"skipped {message.get('start')}–{message.get('end')} s: {reason}")
        else:
            ledger.refused(f"stream skipped audio ({reason})")
    if run.close_code == TRY_AGAIN_LATER:
        ledger.refused("stream closed with 1013 (too many streams)")
    elif run.done_at is None or run.close_code != NORMAL_CLOSE:
        ended = "after done" if run.done_at is not None else "without done"
        ledger.error(where, f"the stream ended {ended}, close code {run.close_code}")
    elif not skipped:
        ledger.check_wer(where, item, run.text)


async def judged_session(
    session: Awaitable[Live],
    judge: Callable[[Live, Item, Ledger, str], None],
    item: Item,
    ledger: Ledger,
    where: str,
) -> Live | None:
    """A live client's session, judged; None (after a pause) when the client failed."""
    try:
        run = await session
    except Exception as exc:
        ledger.lose(where, describe(exc))
        await asyncio.sleep(RETRY_PAUSE_S)
        return None
    judge(run, item, ledger, where)
    return run


async def guarded_stream(
    client: Stack, item: Item, ledger: Ledger, where: str, delay: float = 0.0
) -> StreamRun | None:
    """One paced stream, judged."""
    return await judged_session(
        service.stream(client, item, delay=delay), judge_stream, item, ledger, where
    )


async def back_to_back(
    session: Callable[[float], Awaitable[Live | None]], delay: float, deadline: float
) -> list[Live]:
    """`session(delay)` one after another, the first after `delay`; at least one, and none
    started after `deadline` (monotonic); the ones that did not fail."""
    runs = []
    while True:
        if run := await session(delay):
            runs.append(run)
        if time.monotonic() >= deadline:
            return runs
        delay = 0.0


def judge_realtime(run: RealtimeRun, item: Item, ledger: Ledger, where: str) -> None:
    """`error` events and turns that `failed` are errors; a session that transcribed no turn,
    or whose turns were still open when it gave up waiting, lost work."""
    for _, event in run.events:
        if event["type"] == "error":
            ledger.error(where, f"error event {event.get('error')}")
        elif event["type"] == service.FAILED:
            ledger.error(where, f"turn failed: {event.get('error')}")
    if run.unfinished or not run.turns:
        ledger.lose(where, f"{run.turns} turns ended, {run.unfinished} still open")
    elif not any(event["type"] == service.FAILED for _, event in run.events):
        ledger.check_wer(where, item, run.text)


async def guarded_realtime(
    client: Stack, item: Item, ledger: Ledger, where: str, delay: float = 0.0
) -> RealtimeRun | None:
    """One Realtime transcription session, judged."""
    session = service.realtime_session(client, item, delay=delay, timeout_s=OPERATION_TIMEOUT_S)
    return await judged_session(session, judge_realtime, item, ledger, where)


def error_code(reply: service.UploadReply) -> str:
    error = reply.body.get("error")
    return str(error.get("code", "?")) if isinstance(error, dict) else "?"


def is_overload_refusal(reply: service.UploadReply, faults: tuple[str, ...] = FAULTS) -> bool:
    return (
        reply.status in OVERLOAD_STATUSES
        and reply.retry_after is not None
        and error_code(reply) not in faults
    )


def retry_pause(retry_after: str) -> float:
    try:
        return float(retry_after)
    except ValueError:  # an HTTP date: not worth parsing for a pause
        return RETRY_PAUSE_S


def upload_label(item: Item, response_format: str) -> str:
    return item.name if response_format == "json" else f"{item.name}, {response_format}"


def unlabelled_segments(reply: service.UploadReply) -> int:
    """How many of a `diarized_json` reply's segments name no speaker (all, when none came)."""
    segments = reply.body.get("segments") or [{}]
    return sum(not isinstance(segment.get("speaker"), str) for segment in segments)


async def upload_once(
    client: Stack, item: Item, ledger: Ledger, where: str, response_format: str = "json"
) -> tuple[dict | None, float]:
    """One upload, judged: (its record when it succeeded, how long to pause before the next)."""
    try:
        reply = await service.post_upload(client, item, response_format)
    except Exception as exc:
        ledger.lose(where, describe(exc))
        return None, RETRY_PAUSE_S
    if reply.status == 200:
        wer = ledger.check_wer(where, item, str(reply.body.get("text", "")))
        if response_format == "diarized_json" and (missing := unlabelled_segments(reply)):
            ledger.lose(where, f"{missing} segments without a speaker")
        label = upload_label(item, response_format)
        return {"item": label, "wall_s": reply.wall_s, "wer": wer}, 0.0
    if is_overload_refusal(reply, ledger.faults):
        ledger.refused(f"upload {reply.status} {error_code(reply)}")
        return None, retry_pause(reply.retry_after or "")
    if error_code(reply) == "?":  # no documented error: whatever happened went unsaid
        ledger.lose(where, f"HTTP {reply.status} {reply.body}")
    else:
        ledger.error(where, f"HTTP {reply.status} {reply.body}")
    return None, RETRY_PAUSE_S


async def uploads_back_to_back(
    client: Stack,
    items: list[Item],
    ledger: Ledger,
    where: str,
    deadline: float,
    response_format: str = "json",
) -> list[dict]:
    """Uploads of `items` in turn, each as soon as the last one is answered (or after the
    pause a refusal asks for); at least one, and none started after `deadline` (monotonic)."""
    records = []
    for item in itertools.cycle(items):
        record, pause = await upload_once(
            client, item, ledger, f"{where}, {item.name}", response_format
        )
        if record is not None:
            records.append(record)
        if time.monotonic() + pause >= deadline:
            break
        await asyncio.sleep(pause)
    return records


# ---- phases ----------------------------------------------------------------------------------


@asynccontextmanager
async def own_client(stack: Stack) -> AsyncIterator[Stack]:
    """The stack through a client session of its own, closed on exit: none of its connections
    is open in the gateway when resources are sampled next."""
    timeout = aiohttp.ClientTimeout(total=OPERATION_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield replace(stack, session=session)


async def file_mode_baselines(client: Stack, items: list[Item]) -> dict[str, float]:
    """One upload of each item alone (also the warm-up): its WER is the item's baseline."""
    baselines = {}
    for item in items:
        text, wall = await service.upload(client, item)
        baselines[item.name] = word_error_rate(item.text, text)
        log(f"baseline upload of {item.name}: {wall:.1f} s, WER {100 * baselines[item.name]:.1f} %")
    return baselines


async def alone_phase(client: Stack, item: Item, streams: int, ledger: Ledger) -> list[StreamRun]:
    delays = service.start_delays(client, streams)
    runs = await asyncio.gather(
        *(
            guarded_stream(client, item, ledger, f"stream {i} alone", delay)
            for i, delay in enumerate(delays)
        )
    )
    return [run for run in runs if run is not None]


@dataclass
class MixedRuns:
    streams: list[StreamRun]
    realtime: list[RealtimeRun]
    uploads: list[dict]


async def mixed_phase(
    client: Stack,
    stream_item: Item,
    upload_items: list[Item],
    args: argparse.Namespace,
    seconds: float,
    ledger: Ledger,
    label: str,
) -> MixedRuns:
    """`args.streams` streams and `args.realtime` Realtime sessions back to back (their starts
    spread over one step), `args.uploads` upload clients and `args.diarized` ones asking who
    spoke when back to back, all starting work for `seconds` (each at least once); upload
    client i starts at item i of `upload_items`, so the clients mix long and short files.
    `label` names the phase in errors."""
    deadline = time.monotonic() + seconds
    delays = service.start_delays(client, args.streams + args.realtime)
    streams = (
        back_to_back(
            partial(guarded_stream, client, stream_item, ledger, f"stream {i} {label}"),
            delay,
            deadline,
        )
        for i, delay in enumerate(delays[: args.streams])
    )
    realtime = (
        back_to_back(
            partial(guarded_realtime, client, stream_item, ledger, f"Realtime session {i} {label}"),
            delay,
            deadline,
        )
        for i, delay in enumerate(delays[args.streams :])
    )
    formats = ["json"] * args.uploads + ["diarized_json"] * args.diarized
    uploads = (
        uploads_back_to_back(
            client,
            rotated(upload_items, i),
            ledger,
            f"uploader {i} ({response_format}) {label}",
            deadline,
            response_format,
        )
        for i, response_format in enumerate(formats)
    )
    stream_runs, realtime_runs, upload_records = await asyncio.gather(
        asyncio.gather(*streams), asyncio.gather(*realtime), asyncio.gather(*uploads)
    )
    chained = itertools.chain.from_iterable
    return MixedRuns(
        list(chained(stream_runs)), list(chained(realtime_runs)), list(chained(upload_records))
    )


def rotated(items: list[Item], start: int) -> list[Item]:
    start %= len(items)
    return items[start:] + items[:start]


class Monitor:
    """The gateway's and Triton's resources, sampled every `SAMPLE_EVERY_S` while `running`
    and on demand, each sample labelled with the phase."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started = time.monotonic()
        self.phase = "start-up"
        self.samples: list[dict[str, Any]] = []

    async def sample(self, label: str | None = None) -> dict[str, Any]:
        snapshot = await asyncio.to_thread(
            resources.snapshot, self.stack.gateway_pid, self.stack.current_triton_pid()
        )
        record = {
            "t_s": round(time.monotonic() - self.started, 1),
            "phase": label or self.phase,
            **asdict(snapshot),
        }
        self.samples.append(record)
        return record

    async def settled_sample(self, label: str) -> dict[str, Any]:
        """A sample once the clients' connections, the uploads' ffmpeg and the freed heap have
        had time to go."""
        await asyncio.sleep(SETTLE_S)
        return await self.sample(label)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async def every() -> None:
            while True:
                await self.sample()
                await asyncio.sleep(SAMPLE_EVERY_S)

        task = asyncio.create_task(every())
        try:
            yield
        finally:
            task.cancel()


# ---- results ---------------------------------------------------------------------------------


def by_third(arrived: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """The quantiles of the latencies (arrival, latency) whose events arrived in the first and
    in the last third of the time between the first arrival and the last: a service that
    falls behind as it runs shows it there."""
    times = [t for t, _ in arrived]
    start, end = min(times, default=0.0), max(times, default=0.0)
    third = (end - start) / 3
    return {
        "first": service.quantiles([x for t, x in arrived if t <= start + third]),
        "last": service.quantiles([x for t, x in arrived if t >= end - third]),
    }


def stream_summary(runs: list[StreamRun], item: Item) -> dict[str, Any]:
    arrived = [x for run in runs for x in run.arrived_final_latencies()]
    completed = [run for run in runs if run.done_at is not None]
    wers = [word_error_rate(item.text, run.text) for run in completed]
    return {
        "streams": len(runs),
        "completed": len(completed),
        "final_latency_s": service.quantiles([x for _, x in arrived]),
        "final_latency_by_third_s": by_third(arrived),
        "wer": {
            "median": statistics.median(wers) if wers else math.nan,
            "max": max(wers, default=math.nan),
        },
        "skipped_s": sum(
            m["end"] - m["start"] for run in runs for _, m in run.messages if m["type"] == "skipped"
        ),
    }


def realtime_summary(runs: list[RealtimeRun], item: Item) -> dict[str, Any]:
    arrived = [x for run in runs for x in run.arrived_completion_latencies()]
    wers = [word_error_rate(item.text, run.text) for run in runs if run.turns]
    return {
        "sessions": len(runs),
        "turns": sum(run.turns for run in runs),
        "completed_after_stop_s": service.quantiles([x for _, x in arrived]),
        "completed_after_stop_by_third_s": by_third(arrived),
        "wer": {
            "median": statistics.median(wers) if wers else math.nan,
            "max": max(wers, default=math.nan),
        },
    }


def upload_summary(
    records: list[dict], items: list[Item], formats: list[str], baselines: dict[str, float]
) -> list[dict]:
    summary = []
    for response_format, item in itertools.product(formats, items):
        label = upload_label(item, response_format)
        done = [r for r in records if r["item"] == label]
        summary.append(
            {
                "item": label,
                "format": response_format,
                "duration_s": item.duration,
                "completed": len(done),
                "wall_s": report.spread([r["wall_s"] for r in done]) if done else None,
                "wer": report.spread([r["wer"] for r in done]) if done else None,
                "file_mode_wer": baselines[item.name],
            }
        )
    return summary


def memory_rule(name: str, start: dict, end: dict) -> dict[str, Any]:
    before, after = start[name]["rss_mib"], end[name]["rss_mib"]
    allowed = max(RSS_GROWTH_FRACTION * before, RSS_GROWTH_MIB)
    bound = f"max({100 * RSS_GROWTH_FRACTION:.0f} %, {RSS_GROWTH_MIB:.0f} MiB)"
    return {
        "rule": f"{name.capitalize()} memory flat: end RSS ≤ start + {bound} = +{allowed:.0f} MiB",
        "measured": f"{before:.0f} → {after:.0f} MiB ({after - before:+.1f})",
        "passed": after - before <= allowed,
    }


def fd_rule(name: str, start: dict, end: dict) -> dict[str, Any]:
    before, after = start[name]["fds"], end[name]["fds"]
    return {
        "rule": f"{name.capitalize()} descriptors flat: end ≤ start + {FD_SLACK}",
        "measured": f"{before} → {after} ({after - before:+d})",
        "passed": after <= before + FD_SLACK,
    }


def load_ran_rule(results: dict[str, Any]) -> dict[str, Any]:
    """At least one of each kind of client the soak was asked for completed its work."""
    config = results["config"]
    completed = {
        "streams": results["mixed"]["completed"],
        "Realtime sessions": results["realtime"]["sessions"] if config["realtime"] else None,
        "uploads": sum(u["completed"] for u in results["uploads"] if u["format"] == "json"),
        "diarized uploads": (
            sum(u["completed"] for u in results["uploads"] if u["format"] != "json")
            if config["diarized"]
            else None
        ),
    }
    asked = {kind: count for kind, count in completed.items() if count is not None}
    return {
        "rule": "mixed load ran: ≥ 1 of each kind of client completed",
        "measured": ", ".join(f"{count} {kind}" for kind, count in asked.items()),
        "passed": all(asked.values()),
    }


def within_latency(value: float, compared_with: float) -> bool:
    return not math.isnan(value) and value <= LATENCY_FACTOR * compared_with + LATENCY_SLACK_S


def latency_rule(
    what: str, latency: dict[str, float], against: str, compared_with: dict[str, float]
) -> dict[str, Any]:
    """`latency`'s p50 and p95 (of `what`) within tolerance of `compared_with`'s (`against`)."""
    return {
        "rule": f"{what}: p50 and p95 ≤ {LATENCY_FACTOR:g} × {against} + {LATENCY_SLACK_S:g} s",
        "measured": ", ".join(
            f"{q} {latency[q]:.2f} s ({against} {compared_with[q]:.2f})" for q in ("p50", "p95")
        ),
        "passed": all(within_latency(latency[q], compared_with[q]) for q in ("p50", "p95")),
    }


def latency_rules(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The streams under the mixed load against the same streams alone (file work must not
    hold them back), and each kind of live client at the mixed phase's end against its start
    (nothing may fall behind as the soak runs)."""
    mixed = results["mixed"]
    rules = [
        latency_rule(
            "streams' finals under the mixed load",
            mixed["final_latency_s"],
            "alone",
            results["alone"]["final_latency_s"],
        ),
        latency_rule(
            "streams' finals in the mixed phase's last third",
            mixed["final_latency_by_third_s"]["last"],
            "its first third",
            mixed["final_latency_by_third_s"]["first"],
        ),
    ]
    if results["config"]["realtime"]:
        thirds = results["realtime"]["completed_after_stop_by_third_s"]
        rules.append(
            latency_rule(
                "Realtime turns completed in the mixed phase's last third",
                thirds["last"],
                "its first third",
                thirds["first"],
            )
        )
    return rules


def verdict_rules(results: dict[str, Any]) -> list[dict[str, Any]]:
    start, end = results["resources"]["start"], results["resources"]["end"]
    return [
        {
            "rule": "unexpected errors = 0",
            "measured": str(len(results["unexpected_errors"])),
            "passed": not results["unexpected_errors"],
        },
        load_ran_rule(results),
        *latency_rules(results),
        memory_rule("gateway", start, end),
        memory_rule("triton", start, end),
        fd_rule("gateway", start, end),
        fd_rule("triton", start, end),
        {
            "rule": "ffmpeg processes left under the gateway = 0",
            "measured": str(end["ffmpeg"]),
            "passed": end["ffmpeg"] == 0,
        },
    ]


def latency_row(phase: str, summary: dict[str, Any], file_wer: float) -> list[str]:
    latency, wer = summary["final_latency_s"], summary["wer"]
    return [
        phase,
        f"{summary['streams']} ({summary['completed']})",
        str(latency["count"]),
        f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['max']:.2f}",
        f"{100 * wer['median']:.1f} % (max {100 * wer['max']:.1f} %)",
        f"{100 * file_wer:.1f} %",
        f"{summary['skipped_s']:.1f}",
    ]


def realtime_section(summary: dict[str, Any], asked: int) -> list[str]:
    if not asked:
        return []
    latency, wer = summary["completed_after_stop_s"], summary["wer"]
    return [
        "## Realtime sessions during the mixed phase",
        "",
        report.table(
            [
                "sessions",
                "turns",
                "completed after the stop's audio p50 / p95 / max s",
                "WER of the turns joined",
            ],
            [
                [
                    str(summary["sessions"]),
                    str(summary["turns"]),
                    f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['max']:.2f}",
                    f"{100 * wer['median']:.1f} % (max {100 * wer['max']:.1f} %)",
                ]
            ],
        ),
        "",
    ]


def upload_row(summary: dict[str, Any]) -> list[str]:
    head = [f"{summary['item']} ({summary['duration_s']:.1f} s)", str(summary["completed"])]
    baseline = f"{100 * summary['file_mode_wer']:.1f} %"
    if not summary["completed"]:
        return [*head, "–", "–", "–", baseline]
    wall, wer = summary["wall_s"], summary["wer"]
    return [
        *head,
        report.fmt_spread(wall),
        f"{wall['median'] / summary['duration_s']:.3f}",
        f"{100 * wer['median']:.1f} % (max {100 * wer['max']:.1f} %)",
        baseline,
    ]


def trend(values: list[float], digits: int = 0) -> str:
    """`first → last (min–max)` of a phase's samples; the value alone for one sample."""

    def f(x: float) -> str:
        return f"{x:.{digits}f}"

    if len(values) == 1:
        return f(values[0])
    return f"{f(values[0])} → {f(values[-1])} ({f(min(values))}–{f(max(values))})"


def phase_rows(series: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for phase, group in itertools.groupby(series, key=lambda sample: sample["phase"]):
        samples = list(group)
        rows.append(
            [
                phase,
                str(len(samples)),
                *(
                    trend([s[process][metric] for s in samples])
                    for process, metric in (
                        ("gateway", "rss_mib"),
                        ("gateway", "fds"),
                        ("triton", "rss_mib"),
                        ("triton", "shmem_mib"),
                        ("triton", "fds"),
                    )
                ),
                str(max(s["ffmpeg"] for s in samples)),
            ]
        )
    return rows


def outcomes_section(results: dict[str, Any]) -> list[str]:
    errors, refusals = results["unexpected_errors"], results["expected_refusals"]
    lines = [
        f"Unexpected errors: **{len(errors)}**. Expected refusals: {sum(refusals.values())}"
        + ("" if not refusals else " (" + ", ".join(f"{k}: {n}" for k, n in refusals.items()) + ")")
        + ".",
    ]
    if errors:
        lines += ["", f"First {min(len(errors), ERRORS_SHOWN)} of {len(errors)}:", ""]
        lines += [f"- `{error}`" for error in errors[:ERRORS_SHOWN]]
    return lines


def header(results: dict[str, Any]) -> list[str]:
    m, config = results["machine"], results["config"]
    v = m["versions"]
    uploads = ", ".join(
        f"{u['item']} ({u['duration_s']:.1f} s)"
        for u in results["uploads"]
        if u["format"] == "json"
    )
    return [
        f"# hermes soak, {results['date']} on {m['host']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, GPU: {m['gpu']}; Python {v['python']}, "
        f"torch {v['torch']}, tritonserver {v['tritonserver']} (nvidia-pytriton "
        f"{v['nvidia-pytriton']}), aiohttp {v['aiohttp']}. Model tiny.en. Load average at start: "
        f"{report.load_text(m['load_average_at_start'])}"
        + (report.NOISY_NOTE if results["noisy"] else "")
        + ".",
        "",
        (
            f"Load: {config['streams']} real-time streams of {config['stream_item']} "
            f"({config['stream_duration_s']:.1f} s, 100 ms frames) and {config['realtime']} "
            "OpenAI Realtime transcription sessions of it (24 kHz PCM16, server VAD), their "
            f"starts spread over one step; {config['uploads']} clients uploading {uploads} in "
            f"turn to `/v1/audio/transcriptions`, and {config['diarized']} more asking who spoke "
            "when (`response_format=diarized_json`: the speaker model runs too); each client back "
            "to back. Alone: the streams once, nothing else running. Mixed: all of them for "
            f"{config['minutes']:g} min (nothing new starts after that; what runs finishes). The "
            "gateway runs as its own process (`hermes serve`): its memory and descriptors are its "
            "own, not mixed with the clients'."
        ),
        "",
        report.run_summary(results),
    ]


def markdown(results: dict[str, Any]) -> str:
    file_wer = results["baselines"][results["config"]["stream_item"]]
    failed = [rule["rule"] for rule in results["rules"] if not rule["passed"]]
    verdict = "**pass**" if not failed else "**FAIL** (" + "; ".join(failed) + ")"
    parts = [
        *header(results),
        "",
        f"Verdict: {verdict}",
        "",
        "## Streaming final latency, alone and under mixed load",
        "",
        report.table(
            [
                "phase",
                "streams (completed)",
                "finals",
                "final latency p50 / p95 / max s",
                "stream WER",
                "file WER",
                "audio skipped s",
            ],
            [
                latency_row("alone", results["alone"], file_wer),
                latency_row("mixed", results["mixed"], file_wer),
            ],
        ),
        "",
        *realtime_section(results["realtime"], results["config"]["realtime"]),
        "## Uploads during the mixed phase",
        "",
        report.table(
            [
                "file",
                "completed",
                "wall s, median (min–max)",
                "RTF",
                "WER",
                "file WER (baseline, alone)",
            ],
            [upload_row(u) for u in results["uploads"]],
        ),
        "",
        "## Errors and refusals",
        "",
        *outcomes_section(results),
        "",
        "## Verdict",
        "",
        (
            "Start: after the warm-up (file-mode baselines, the streams alone, one round of the "
            "mixed load, one batch of the model's largest size); end: after the mixed phase; "
            f"both with no client connection open, {SETTLE_S:g} s after the last one closed. "
            "Triton: tritonserver and its Python backend "
            "stubs."
        ),
        "",
        report.table(
            ["rule", "measured", "pass"],
            [
                [r["rule"], r["measured"], "yes" if r["passed"] else "**no**"]
                for r in results["rules"]
            ],
        ),
        "",
        "## Resources by phase",
        "",
        f"Sampled every {SAMPLE_EVERY_S:g} s (all in the JSON): first → last (min–max).",
        "",
        report.table(
            [
                "phase",
                "samples",
                "gateway RSS MiB",
                "gateway fds",
                "Triton RSS MiB",
                "of it shared MiB",
                "Triton fds",
                "ffmpeg running, max",
            ],
            phase_rows(results["resources"]["series"]),
        ),
    ]
    return "\n".join(parts) + "\n"


# ---- orchestration ---------------------------------------------------------------------------


async def largest_batch(stack: Stack, audio: Any) -> None:
    """One batch of the model's largest size (`max_batch_size` windows of 30 s) straight to
    Triton. Tensors pass between tritonserver and its Python stub through a shared-memory pool
    that grows to the largest batch it has carried and is then reused (it counts in both
    processes' RSS): after this batch it is at that bound, so memory growth measured from the
    start sample on is growth, not the pool reaching its size."""
    size = (await stack.triton_json(f"/v2/models/{stack.settings.triton_model}/config"))[
        "max_batch_size"
    ]
    window = audio[:WINDOW_SAMPLES]
    async with stack.triton_pool() as pool:
        await asyncio.gather(
            *(pool.transcribe(window, TranscribeOptions(language="en")) for _ in range(size))
        )


async def phases(
    stack: Stack,
    monitor: Monitor,
    stream_item: Item,
    upload_items: list[Item],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """File-mode baselines, the streams alone, one round of the mixed load and one batch of
    the largest size to warm up (the first large batches grow Triton's heap and its shared
    memory pool once), the start sample, the mixed phase, the end sample."""
    async with own_client(stack) as client:
        monitor.phase = "baselines"
        ledger = Ledger(await file_mode_baselines(client, upload_items))
        monitor.phase = "alone"
        log(f"alone: {args.streams} streams")
        alone = await alone_phase(client, stream_item, args.streams, ledger)
        monitor.phase = "mixed warm-up"
        log("mixed warm-up: every live and every upload client once, together")
        await mixed_phase(client, stream_item, upload_items, args, 0.0, ledger, "mixed warm-up")
    await largest_batch(stack, upload_items[0].audio)
    start = await monitor.settled_sample("start")
    monitor.phase = "mixed"
    log(
        f"mixed: {args.streams} streams, {args.realtime} Realtime sessions, {args.uploads} upload "
        f"clients and {args.diarized} diarized ones for {args.minutes:g} min"
    )
    async with own_client(stack) as client:
        mixed = await mixed_phase(
            client, stream_item, upload_items, args, 60 * args.minutes, ledger, "mixed"
        )
    end = await monitor.settled_sample("end")
    formats = ["json"] + (["diarized_json"] if args.diarized else [])
    return {
        "baselines": ledger.baselines,
        "alone": stream_summary(alone, stream_item),
        "mixed": stream_summary(mixed.streams, stream_item),
        "realtime": realtime_summary(mixed.realtime, stream_item),
        "uploads": upload_summary(mixed.uploads, upload_items, formats, ledger.baselines),
        "unexpected_errors": ledger.errors,
        "expected_refusals": dict(ledger.refusals),
        "resources": {"start": start, "end": end, "series": monitor.samples},
    }


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    meter = report.RunMeter()
    harvard = clip(HARVARD)
    upload_items = [composite.build(TMP_DIR / "composite.wav").item, harvard]
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "command": report.command_line("benchmarks.soak"),
        "config": {
            "minutes": args.minutes,
            "streams": args.streams,
            "uploads": args.uploads,
            "realtime": args.realtime,
            "diarized": args.diarized,
            "stream_item": harvard.name,
            "stream_duration_s": harvard.duration,
            "gateway": "own process (hermes serve)",
        },
    }
    log("starting tritonserver and the gateway")
    async with running_stack(TMP_DIR, separate_gateway=True) as stack:
        results["machine"] = report.machine(await stack.triton_version())
        monitor = Monitor(stack)
        async with monitor.running():
            results.update(await phases(stack, monitor, harvard, upload_items, args))
        meter.check(own_tritonservers=1)
    results.update(meter.end())
    results["rules"] = verdict_rules(results)
    results["passed"] = all(rule["passed"] for rule in results["rules"])
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report.verdict_main(lambda: soak(args), args.output, "soak-", markdown)


if __name__ == "__main__":
    sys.exit(main())
