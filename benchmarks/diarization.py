"""Who spoke when, measured: `python -m benchmarks.diarization [--output DIR]`.

Composites of the test clips' voices (JFK, the Harvard-sentences reader, the two people of the
stereo clip), turns of 2.5 to 12 s with a second of silence between them, go through a local
Triton and the gateway twice: `verbose_json` with word timestamps, then `diarized_json`. The
reference speaker of each moment is the clip it comes from, where the voice detector (unpadded)
finds speech in that clip; the answer's is the segment covering it. Reported per composite:
the diarization error rate (missed speech, false alarm and speaker confusion, on a 10 ms grid,
answer speakers mapped to reference speakers one to one, the largest overlaps first), the
speaker count found against the true one, whether the text is the same, and the time with
diarization against the time without. Targets (issue 22): DER at most 10 %, the right count,
at most 1.3x the time. Writes `diarization.json` to `--output`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import soundfile

from benchmarks.stack import free_port, gateway_in_process, local_triton
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import VadConfig, speech_probabilities, speech_regions
from gateway.server.settings import Settings
from testsupport.clips import DATA_DIR, load_audio

GRID_S = 0.01
MAX_DER, MAX_TIME_RATIO = 0.10, 1.3


def voices() -> dict[str, np.ndarray]:
    jfk = load_audio(DATA_DIR / "jfk.flac")
    harvard = load_audio(DATA_DIR / "OSR_us_000_0034_8k.wav")
    stereo, rate = soundfile.read(DATA_DIR / "stereo_diarization.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    return {"jfk": jfk, "harvard": harvard, "left": stereo[:, 0], "right": stereo[:, 1]}


def plans(clips: dict[str, np.ndarray]) -> dict[str, list[tuple[str, np.ndarray]]]:
    jfk, harvard, left, right = (clips[name] for name in ("jfk", "harvard", "left", "right"))
    second = SAMPLE_RATE
    return {
        "two speakers, long turns": [
            ("jfk", jfk),
            ("harvard", harvard[: 12 * second]),
            ("jfk", jfk[: 6 * second]),
            ("harvard", harvard[12 * second : 24 * second]),
        ],
        "three speakers": [
            ("jfk", jfk),
            ("harvard", harvard[: 12 * second]),
            ("left", left),
            ("jfk", jfk[5 * second :]),
            ("harvard", harvard[12 * second : 20 * second]),
            ("left", left),
        ],
        "two speakers, short turns": [
            ("jfk", jfk[: 4 * second]),
            ("harvard", harvard[: 4 * second]),
            ("jfk", jfk[4 * second : 8 * second]),
            ("harvard", harvard[4 * second : 7 * second]),
            ("jfk", jfk[8 * second :]),
            ("harvard", harvard[7 * second : 11 * second]),
        ],
        "the stereo clip's two people": [("left", left), ("right", right), ("left", left)],
    }


def composite(
    plan: list[tuple[str, np.ndarray]],
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The audio, and (speaker, start, end) of the speech in it."""
    pieces, reference, cursor = [], [], 0
    unpadded = replace(VadConfig(), pad_seconds=0.0)
    for speaker, audio in plan:
        for start, end in speech_regions(speech_probabilities(audio), audio.size, unpadded):
            reference.append(
                (speaker, (cursor + start) / SAMPLE_RATE, (cursor + end) / SAMPLE_RATE)
            )
        pieces += [audio, np.zeros(SAMPLE_RATE, np.float32)]
        cursor += audio.size + SAMPLE_RATE
    return np.concatenate(pieces), reference


def error_rate(
    reference: list[tuple[str, float, float]],
    answer: list[tuple[str, float, float]],
    duration: float,
) -> dict[str, float]:
    grid = np.arange(0.0, duration, GRID_S)

    def labels(spans: list[tuple[str, float, float]]) -> list[str | None]:
        found: list[str | None] = [None] * grid.size
        for speaker, start, end in spans:
            for index in np.flatnonzero((grid >= start) & (grid < end)):
                found[index] = speaker
        return found

    truth, heard = labels(reference), labels(answer)
    overlap: dict[tuple[str, str], int] = {}
    for wanted, got in zip(truth, heard, strict=True):
        if wanted and got:
            overlap[(got, wanted)] = overlap.get((got, wanted), 0) + 1
    mapping: dict[str, str] = {}
    for (got, wanted), _ in sorted(overlap.items(), key=lambda item: -item[1]):
        if got not in mapping and wanted not in mapping.values():
            mapping[got] = wanted
    speech = sum(1 for wanted in truth if wanted)
    missed = sum(1 for wanted, got in zip(truth, heard, strict=True) if wanted and not got)
    false_alarm = sum(1 for wanted, got in zip(truth, heard, strict=True) if got and not wanted)
    confused = sum(
        1
        for wanted, got in zip(truth, heard, strict=True)
        if wanted and got and mapping.get(got) != wanted
    )
    return {
        "der": (missed + false_alarm + confused) / speech,
        "missed": missed / speech,
        "false_alarm": false_alarm / speech,
        "confusion": confused / speech,
    }


async def run(output: Path) -> list[dict[str, object]]:
    output.mkdir(parents=True, exist_ok=True)
    clips = voices()
    results: list[dict[str, object]] = []
    async with local_triton(output / "diarization-triton.log") as triton:
        settings = Settings(
            triton_url=triton.grpc_url, port=free_port(), max_upload_mb=64, max_audio_seconds=600
        )
        async with gateway_in_process(settings), aiohttp.ClientSession() as session:
            url = f"http://{settings.host}:{settings.port}/v1/audio/transcriptions"

            async def post(path: Path, **fields: str) -> tuple[dict, float]:
                form = aiohttp.FormData()
                form.add_field("file", path.read_bytes(), filename=path.name)
                for name, value in fields.items():
                    form.add_field(name, value)
                began = time.perf_counter()
                async with session.post(url, data=form) as response:
                    body = await response.json()
                    response.raise_for_status()
                return body, time.perf_counter() - began

            for name, plan in plans(clips).items():
                audio, reference = composite(plan)
                path = output / f"diarization-{len(results)}.flac"
                soundfile.write(path, audio, SAMPLE_RATE)
                await post(path)  # warm
                plain, plain_s = await post(
                    path, response_format="verbose_json", **{"timestamp_granularities[]": "word"}
                )
                diarized, diarized_s = await post(path, response_format="diarized_json")
                answer = [(s["speaker"], s["start"], s["end"]) for s in diarized["segments"]]
                rates = error_rate(reference, answer, audio.size / SAMPLE_RATE)
                found = len({speaker for speaker, _, _ in answer})
                true = len({speaker for speaker, _ in plan})
                results.append(
                    {
                        "composite": name,
                        "seconds": round(audio.size / SAMPLE_RATE, 1),
                        **{key: round(value, 4) for key, value in rates.items()},
                        "speakers_found": found,
                        "speakers": true,
                        "same_text": plain["text"] == diarized["text"],
                        "time_ratio": round(diarized_s / plain_s, 3),
                        "meets_targets": rates["der"] <= MAX_DER
                        and found == true
                        and diarized_s / plain_s <= MAX_TIME_RATIO,
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    (output / "diarization.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/tmp"))
    asyncio.run(run(parser.parse_args().output))


if __name__ == "__main__":
    main()
