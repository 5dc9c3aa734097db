"""File work runs niced: the detector's threads for uploads, every ffmpeg thread and an
upload's steps between the model's calls, while the event loop keeps the gateway's own
priority."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from gateway.modes import diarize, vad
from gateway.modes.audio import SAMPLE_RATE, decode_audio
from gateway.modes.priority import FILE_WORK_NICENESS, as_file_work, lower_this_thread
from testsupport.scripted_backend import ScriptedBackend, low_passed

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

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


REQUEST = contextvars.ContextVar[str]("REQUEST")


async def test_file_work_runs_niced_with_its_arguments_and_the_callers_context() -> None:
    def step(first: int, *, second: int) -> tuple[int, int, str, int]:
        return first, second, REQUEST.get(), os.getpriority(os.PRIO_PROCESS, 0)

    REQUEST.set("upload-1")
    assert await as_file_work(step, 1, second=2) == (1, 2, "upload-1", NICED)
    assert os.getpriority(os.PRIO_PROCESS, 0) == BASE


async def test_an_uploads_regions_and_its_speakers_clustering_run_niced(monkeypatch) -> None:
    """What an upload does on the CPU between the detector and the model, and between the
    speaker model and its answer: in the file work's threads, not the event loop's or
    asyncio's default ones (which run at the gateway's priority)."""
    seen: dict[str, int] = {}

    def noted(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            seen[name] = os.getpriority(os.PRIO_PROCESS, 0)
            return func(*args, **kwargs)

        return run

    monkeypatch.setattr(vad, "speech_regions", noted("file regions", vad.speech_regions))
    monkeypatch.setattr(diarize, "speech_regions", noted("speaker regions", diarize.speech_regions))
    monkeypatch.setattr(diarize, "cluster_windows", noted("clustering", diarize.cluster_windows))
    jfk = await decode_audio((DATA_DIR / "jfk.flac").read_bytes())
    two_voices = np.concatenate([jfk, np.zeros(SAMPLE_RATE, np.float32), low_passed(jfk)])

    found = await vad.SpeechMap.of(two_voices, vad.VadConfig())
    await diarize.diarize(ScriptedBackend(), two_voices, [])

    assert found.regions
    assert seen == {"file regions": NICED, "speaker regions": NICED, "clustering": NICED}
