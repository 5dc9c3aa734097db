"""Triton's own trace of every request, read back for one figure: how long the model sat idle
while requests waited for it.

Triton's counters say how long requests queued and how long executions took, not whether the
model was free while a request queued. That happens when the dynamic batcher hands work over
late: with priority levels or a queue policy in the config (ours has both) it can miss its
wake-up and sleep up to 500 ms after an execution with requests waiting (see config.pbtxt).
Tracing every request (`--trace-config level=TIMESTAMPS`, written when the server stops) shows
it: for each execution whose requests were queued before the previous one ended, the gap
between that end and its start. The gateway's wake-ups for the batcher (request id
`wake-up`, see `gateway/backend/batcher_wake_up.py`) are counted apart: they are no work that
waited, and an execution of them alone is no work done. Trace timestamps are the server's
monotonic clock, Python's `time.monotonic_ns` on the same host, so a level's stretch of time
picks out its executions.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gateway.backend.batcher_wake_up import WAKE_UP_REQUEST_ID

MODEL = "whisper"


def trace_args(path: Path) -> tuple[str, ...]:
    """tritonserver flags that trace every request's timestamps into `path` at shutdown."""
    return (
        f"--trace-config=triton,file={path}",
        "--trace-config=triton,log-frequency=0",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1",
        "--trace-config=count=-1",
    )


@dataclass(frozen=True)
class Stretch:
    """A stretch of the host's monotonic clock (`time.monotonic_ns`): one level's run."""

    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class IdleWithBacklog:
    """Executions that had requests waiting when the previous one ended, and the model's idle
    time before each of them."""

    gaps_s: tuple[float, ...]
    traced: bool = True  # False: the server wrote no trace (stopped before it could)
    wake_ups: int = 0  # the gateway's wake-up requests executed
    wake_up_executions: int = 0  # ... and executions that held nothing else

    @property
    def total_s(self) -> float:
        return sum(self.gaps_s)

    @property
    def longest_s(self) -> float:
        return max(self.gaps_s, default=0.0)

    def describe(self) -> str:
        if not self.traced:
            return "not known: tritonserver wrote no trace"
        said = (
            f"{len(self.gaps_s)} hand-overs: {self.total_s * 1000:.0f} ms in all, "
            f"longest {self.longest_s * 1000:.0f} ms"
            if self.gaps_s
            else "no hand-over with requests waiting"
        )
        if self.wake_ups:
            alone = self.wake_up_executions
            said += f"; {self.wake_ups} wake-ups, {alone} executions of them alone"
        return said


@dataclass(frozen=True)
class _Request:
    stamps: dict[str, int]  # {timestamp name: ns}
    wake_up: bool


def _requests(path: Path, model: str) -> list[_Request]:
    """Each executed request of `model` in the trace."""
    entries = json.loads(path.read_text())
    names = {entry["id"]: entry for entry in entries if "model_name" in entry}
    stamps: dict[int, dict[str, int]] = defaultdict(dict)
    for entry in entries:
        if names.get(entry["id"], {}).get("model_name") == model:
            for stamp in entry.get("timestamps", ()):
                stamps[entry["id"]][stamp["name"]] = stamp["ns"]
    return [
        _Request(found, names[trace_id].get("request_id") == WAKE_UP_REQUEST_ID)
        for trace_id, found in stamps.items()
        if "COMPUTE_START" in found
    ]


def idle_with_backlog(path: Path, stretch: Stretch, model: str = MODEL) -> IdleWithBacklog:
    """The hand-overs to executions that started within `stretch` (none known when the
    server left no trace: a benchmark's other figures stand without it)."""
    if not path.is_file():
        return IdleWithBacklog((), traced=False)
    executions: dict[int, list[_Request]] = defaultdict(list)
    for request in _requests(path, model):
        executions[request.stamps["COMPUTE_START"]].append(request)
    starts = sorted(executions)
    within = [start for start in starts if stretch.start_ns <= start <= stretch.end_ns]
    # an execution of wake-ups alone is no work done: the model was idle around it
    working = [start for start in starts if not all(r.wake_up for r in executions[start])]
    gaps = []
    for previous, current in zip(working, working[1:], strict=False):
        if current not in within:
            continue
        ended = max(r.stamps.get("COMPUTE_END", previous) for r in executions[previous])
        if any(not r.wake_up and r.stamps["QUEUE_START"] < ended for r in executions[current]):
            gaps.append(max(current - ended, 0) / 1e9)
    return IdleWithBacklog(
        tuple(gaps),
        wake_ups=sum(r.wake_up for start in within for r in executions[start]),
        wake_up_executions=sum(all(r.wake_up for r in executions[start]) for start in within),
    )
