"""File work runs niced: the detector's threads for uploads and every ffmpeg thread, while
the event loop keeps the gateway's own priority."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from gateway.modes import vad
from gateway.modes.audio import decode_audio
from gateway.modes.priority import FILE_WORK_NICENESS, lower_this_thread

BASE = os.getpriority(os.PRIO_PROCESS, 0)
NICED = min(BASE + FILE_WORK_NICENESS, 19)

pytestmark = pytest.mark.skipif(BASE >= 19, reason="the test runs as nice as allowed already")


def is_ffmpeg(pid: str) -> bool:
    try:
        return "ffmpeg" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:  # ended
        return False


def nice_of(task: Path) -> int | None:
    """A thread's niceness as /proc reports it (field 19 of its stat); None once it ended."""
    try:
        stat = (task / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_a_lowered_thread_is_niced_and_no_other() -> None:
    seen: list[int] = []

    def work() -> None:
        lower_this_thread()
        seen.append(os.getpriority(os.PRIO_PROCESS, 0))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [NICED]
    assert os.getpriority(os.PRIO_PROCESS, 0) == BASE


async def test_an_uploads_detector_threads_are_niced() -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, 0)

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(vad._scoring_pool(), niceness) == NICED
    assert niceness() == BASE  # the event loop's thread keeps the gateway's priority


async def test_a_decoding_is_niced_ffmpeg_and_the_thread_reading_its_output(
    tmp_path: Path,
) -> None:
    """Seen while ffmpeg writes its output (by the decoder's watcher, told of each chunk):
    its threads, demuxer and decoder included, run at the file work's niceness, and so does
    the thread reading the output, which is not the event loop's."""
    path = tmp_path / "noise.wav"
    soundfile.write(path, np.random.default_rng(0).uniform(-0.1, 0.1, 16_000 * 120), 16_000)
    seen: dict[str, int | None] = {}
    readers: set[tuple[int, int]] = set()

    def watch(_size: int) -> None:
        readers.add((threading.get_ident(), os.getpriority(os.PRIO_PROCESS, 0)))
        for child in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
            for pid in child.read_text().split():
                if not is_ffmpeg(pid):
                    continue
                for task in Path(f"/proc/{pid}/task").glob("*"):
                    seen[task.name] = nice_of(task)

    samples = await decode_audio(path.read_bytes(), watch=watch)
    assert samples.size == 16_000 * 120
    assert len(seen) >= 2 and set(seen.values()) - {None} == {NICED}, seen
    assert {niceness for _, niceness in readers} == {NICED}
    assert threading.get_ident() not in {thread for thread, _ in readers}
