"""File work yields the CPU to live work: uploads' ffmpeg and their voice detection run niced.

Live streams are promised latency, uploads throughput. On a small machine the gateway's
ffmpeg children and its file-detection threads compete for the same cores as the event loop
and Triton's model process, which run the streams' steps; an upload that decodes to hours
(or a client that sends upload after upload and hangs up) then held every honest stream's
finals back by seconds (`make soak-hostile` on 2 cores). Raised niceness keeps that work
going whenever a core is free but gives the cores to the live path first: at niceness 10 the
kernel's scheduler weighs a thread about a tenth of one at 0.

Niceness is a per-thread attribute on Linux, which is what lets one pool of the gateway's
threads be niced without its event loop. Raising it needs no privilege; a thread already as
nice as allowed stays as it is. Where the platform has no such call, nothing changes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

logger = logging.getLogger(__name__)

FILE_WORK_NICENESS = 10  # added to the gateway's own: a tenth of the CPU share under contention
_MOST_NICE = 19

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _niced(current: int) -> int:
    return min(current + FILE_WORK_NICENESS, _MOST_NICE)


def lower_this_thread() -> None:
    """Make the calling thread file work (a thread pool's `initializer`)."""
    try:
        # on Linux `who=0` with PRIO_PROCESS is the calling thread, not the whole process
        os.setpriority(os.PRIO_PROCESS, 0, _niced(os.getpriority(os.PRIO_PROCESS, 0)))
    except (AttributeError, OSError) as exc:
        logger.debug("file work runs at the gateway's priority: %s", exc)


def lower_process(pid: int) -> None:
    """Make a child process file work, every thread it has started so far: a multithreaded
    child (ffmpeg runs its demuxer, decoder and filters in threads of their own) may have
    started some before this runs, and those keep their niceness; threads started later
    inherit their creator's."""
    try:
        threads = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:  # gone already, or no /proc: the process itself
        threads = [pid]
    for thread in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, thread, _niced(os.getpriority(os.PRIO_PROCESS, thread)))
        except (AttributeError, OSError):  # ended meanwhile, or not supported
            continue


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


@functools.lru_cache(maxsize=1)
def _file_steps_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        usable_cores(), thread_name_prefix="file-step", initializer=lower_this_thread
    )


async def as_file_work(func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """`asyncio.to_thread` for an upload's steps between the model's calls (its speech regions
    from the detector's scores, the clustering of its speakers): niced, in a pool of their own.
    Not the detector's pool, where such a step would queue behind other uploads' blocks, and
    not asyncio's default one, whose threads run at the gateway's priority."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_file_steps_pool(), call)
