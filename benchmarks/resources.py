"""What processes hold, read from /proc: resident memory, open file descriptors, descendants."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    """Resident memory and open file descriptors of a group of processes, summed. `shmem_mib`
    is the part of `rss_mib` in shared memory: Triton's Python backend passes tensors to its
    stub through a /dev/shm region that both processes map, so it counts twice."""

    processes: int
    rss_mib: float
    fds: int
    shmem_mib: float = 0.0


def parent_ids() -> dict[int, int]:
    """Every live process's parent: {pid: ppid}."""
    parents = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, pending = [], list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += children.get(pid, [])
    return found


def rss_kib(pid: int) -> tuple[int, int]:
    """Resident memory in KiB: all of it, and the part in shared memory."""
    fields = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssShmem"):
            fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("RssShmem", 0)  # a zombie has no memory


def fd_count(pid: int) -> int:
    return len(os.listdir(PROC / str(pid) / "fd"))


def usage(pids: list[int]) -> Usage:
    """The processes' memory and descriptors; one that ended meanwhile counts for nothing."""
    counted, rss, shmem, fds = 0, 0, 0, 0
    for pid in pids:
        try:
            total, shared = rss_kib(pid)
            fds += fd_count(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss, shmem, counted = rss + total, shmem + shared, counted + 1
    return Usage(counted, rss / 1024, fds, shmem / 1024)


def runs_ffmpeg(pid: int) -> bool:
    """The process is an ffmpeg, live (its command line) or a zombie (its name, all it keeps)."""
    try:
        name = (PROC / str(pid) / "comm").read_text()
        command = (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "ffmpeg" in name or "ffmpeg" in command


@dataclass(frozen=True)
class Snapshot:
    gateway: Usage  # the gateway process alone (its ffmpeg children are counted apart)
    triton: Usage  # tritonserver and its descendants (the Python backend stubs)
    ffmpeg: int  # ffmpeg processes below the gateway, zombies included


def snapshot(gateway_pid: int, triton_pid: int) -> Snapshot:
    parents = parent_ids()
    below_gateway = descendants(gateway_pid, parents)
    return Snapshot(
        gateway=usage([gateway_pid]),
        triton=usage([triton_pid, *descendants(triton_pid, parents)]),
        ffmpeg=sum(runs_ffmpeg(pid) for pid in below_gateway),
    )


def _cpu_ticks(stat: Path, with_children: bool = False) -> int:
    """User + system clock ticks from a `/proc/.../stat` file (and those of its waited-for
    children); 0 for a process or thread that is gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # fields from state on: utime stime cutime cstime are 12..15
    return sum(int(x) for x in fields[11 : 15 if with_children else 13])


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) of a process and all its descendants so far, children that
    already ended and were waited for included; 0 for a process that is gone."""
    pids = [root, *descendants(root, parent_ids())]
    ticks = sum(_cpu_ticks(PROC / str(pid) / "stat", pid == root) for pid in pids)
    return ticks / os.sysconf("SC_CLK_TCK")


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process's main thread so far: for the gateway, its event
    loop, which is where one process stops scaling (work in its worker threads is not
    counted); 0 for a process that is gone."""
    return _cpu_ticks(PROC / str(pid) / "task" / str(pid) / "stat") / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB since it started or since
    `reset_peak_rss`; 0 for a process that is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "VmHWM":
                return int(value.split()[0]) / 1024
    except OSError:
        pass
    return 0.0


def reset_peak_rss(pid: int) -> bool:
    """Set the process's VmHWM to its resident memory now (Linux ≥ 4.0, a process of this
    user); whether that worked."""
    try:
        (PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True
