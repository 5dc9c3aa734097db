"""Triton's own trace of every request, read back for one figure: how long the model sat idle
while requests waited for it.

Triton's counters say how long requests queued and how long executions took, not whether the
model was free while a request queued. That happens when the dynamic batcher hands work over
late: with priority levels or a queue policy in the config (ours has both) it can miss its
wake-up and sleep up to 500 ms after an execution with requests waiting (see config.pbtxt).
Tracing every request (`--trace-config level=TIMESTAMPS`, written when the server stops) shows
it: for each execution whose requests were queued before the previous one ended, the gap
between that end and its start. Trace timestamps are the server's monotonic clock, Python's
`time.monotonic_ns` on the same host, so a level's stretch of time picks out its executions.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def total_s(self) -> float:
        return sum(self.gaps_s)

    @property
    def longest_s(self) -> float:
        return max(self.gaps_s, default=0.0)

    def describe(self) -> str:
        if not self.traced:
            return "not known: tritonserver wrote no trace"
        if not self.gaps_s:
            return "no hand-over with requests waiting"
        return (
            f"{len(self.gaps_s)} hand-overs: {self.total_s * 1000:.0f} ms in all, "
            f"longest {self.longest_s * 1000:.0f} ms"
        )


def _requests(path: Path, model: str) -> list[dict[str, int]]:
    """Each traced request of `model` as {timestamp name: ns}."""
    entries = json.loads(path.read_text())
    models = {entry["id"]: entry["model_name"] for entry in entries if "model_name" in entry}
    stamps: dict[int, dict[str, int]] = defaultdict(dict)
    for entry in entries:
        if models.get(entry["id"]) == model:
            for stamp in entry.get("timestamps", ()):
                stamps[entry["id"]][stamp["name"]] = stamp["ns"]
    return [request for request in stamps.values() if "COMPUTE_START" in request]


def idle_with_backlog(path: Path, stretch: Stretch, model: str = MODEL) -> IdleWithBacklog:
    """The hand-overs to executions that started within `stretch` (none known when the
    server left no trace: a benchmark's other figures stand without it)."""
    if not path.is_file():
        return IdleWithBacklog((), traced=False)
    executions: dict[int, list[dict[str, int]]] = defaultdict(list)
    for request in _requests(path, model):
        executions[request["COMPUTE_START"]].append(request)
    starts = sorted(executions)
    gaps = []
    for previous, current in zip(starts, starts[1:], strict=False):
        if not stretch.start_ns <= current <= stretch.end_ns:
            continue
        ended = max(request.get("COMPUTE_END", previous) for request in executions[previous])
        if any(request["QUEUE_START"] < ended for request in executions[current]):
            gaps.append(max(current - ended, 0) / 1e9)
    return IdleWithBacklog(tuple(gaps))
