"""`python -m benchmarks.speaker_beside_whisper`: the speaker model's cost beside Whisper's.

Diarization sends a file's speech regions to the `speaker` model while Whisper transcribes the
file (and serves live streams) in a process of its own on the same cores. With torch's default
of a thread per core in each process, the two wait on one another's threads at every parallel
step, and both slow down several times over. This measures, on the composite (404.8 s), for each
`--threads` value of the speaker model's `cpu_threads` (0: torch's default), the diarization's
embeddings alone and while Whisper transcribes the same file: the wall time of each, and the CPU
seconds each model's process (its Python backend stub) spent meanwhile.

`--output DIR` writes speaker-beside-whisper-<date>-<host>.md with a .json copy.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import composite, report, resources
from benchmarks.report import TMP_DIR, log
from benchmarks.stack import running_stack
from gateway.backend.triton_pool import TritonPool
from gateway.core.contract import TranscribeOptions
from gateway.modes.audio import SAMPLE_RATE, WINDOW_SECONDS
from gateway.modes.diarize import embed_speech
from gateway.modes.files import transcribe_audio
from gateway.tools.local_triton import model_repository_with

SCENARIOS = ("alone", "beside Whisper")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speaker_beside_whisper", description=__doc__
    )
    parser.add_argument(
        "--threads", default="0,1", help="the speaker model's cpu_threads values (default 0,1)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs of each scenario (default 2)")
    parser.add_argument("--output", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def repository_with_speaker_threads(threads: int) -> Path:
    """The model repository with the speaker model on `threads` CPU threads."""
    directory = TMP_DIR / "repositories" / f"speaker-threads-{threads}"
    shutil.rmtree(directory, ignore_errors=True)
    return model_repository_with(directory, {"cpu_threads": str(threads)}, model="speaker")


def stub_cpu_seconds(triton_pid: int) -> dict[str, float]:
    """CPU seconds so far of each of this Triton's Python backend stubs, by its model's name."""
    found: dict[str, float] = {}
    for pid in resources.descendants(triton_pid, resources.parent_ids()):
        try:
            command = (resources.PROC / str(pid) / "cmdline").read_bytes()
        except OSError:  # gone since the listing
            continue
        if b"triton_python_backend_stub" in command:
            model = "speaker" if b"/speaker/" in command else "whisper"
            found[model] = resources.cpu_seconds(pid)
    return found


async def one_run(
    pool: TritonPool, triton_pid: int, audio: np.ndarray, beside_whisper: bool
) -> dict[str, float]:
    began, before = time.perf_counter(), stub_cpu_seconds(triton_pid)

    async def speakers() -> float:
        await embed_speech(pool, audio)
        return time.perf_counter() - began

    async def whisper() -> float:
        options = TranscribeOptions(language="en")
        async for _ in transcribe_audio(
            pool, audio, options, window_seconds=WINDOW_SECONDS, in_flight=2
        ):
            pass
        return time.perf_counter() - began

    walls = await asyncio.gather(speakers(), *([whisper()] if beside_whisper else []))
    after = stub_cpu_seconds(triton_pid)
    run = {
        "speaker_wall_s": walls[0],
        "speaker_cpu_s": after["speaker"] - before["speaker"],
        "whisper_cpu_s": after["whisper"] - before["whisper"],
    }
    if beside_whisper:
        run["whisper_wall_s"] = walls[1]
    return run


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    built = composite.build(TMP_DIR / "composite.wav")
    audio = built.item.audio
    rows = []
    for threads in (int(value) for value in args.threads.split(",")):
        repository = repository_with_speaker_threads(threads)
        async with running_stack(TMP_DIR, model_repository=repository) as stack:
            machine = report.machine(await stack.triton_version())
            async with stack.triton_pool() as pool:
                await one_run(pool, stack.triton_pid, audio[: 30 * SAMPLE_RATE], True)  # warm-up
                for scenario in SCENARIOS:
                    for _ in range(args.repeat):
                        run = await one_run(pool, stack.triton_pid, audio, scenario != SCENARIOS[0])
                        log(f"cpu_threads {threads}, {scenario}: {run}")
                        rows.append({"cpu_threads": threads, "scenario": scenario, **run})
    return {
        "date": datetime.date.today().isoformat(),
        "command": report.command_line("benchmarks.speaker_beside_whisper"),
        "machine": machine,
        "audio_s": audio.size / SAMPLE_RATE,
        "rows": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    header = [
        "speaker model's cpu_threads",
        "embeddings",
        "speaker wall s",
        "speaker CPU s",
        "Whisper wall s",
        "Whisper CPU s",
    ]
    rows = [
        [
            f"{row['cpu_threads']}" + (" (torch's default)" if row["cpu_threads"] == 0 else ""),
            row["scenario"],
            f"{row['speaker_wall_s']:.2f}",
            f"{row['speaker_cpu_s']:.2f}",
            f"{row['whisper_wall_s']:.2f}" if "whisper_wall_s" in row else "–",
            f"{row['whisper_cpu_s']:.2f}",
        ]
        for row in results["rows"]
    ]
    return "\n".join(
        [
            f"# The speaker model beside Whisper, {results['date']} on {m['host']}",
            "",
            f"{m['cpu']}, {m['cores']} cores; torch {m['versions']['torch']} "
            f"({m['torch_cpu_path']}), tritonserver {m['versions']['tritonserver']}. The "
            f"diarization's embeddings of the composite ({results['audio_s']:.1f} s), alone and "
            "while Whisper (tiny.en) transcribes it; CPU seconds of each model's process.",
            "",
            f"Command: `{results['command']}`",
            "",
            report.table(header, rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(measure(args))
    print(markdown(results))
    if args.output is not None:
        paths = report.write(
            results, args.output, prefix="speaker-beside-whisper-", render=markdown
        )
        log(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
