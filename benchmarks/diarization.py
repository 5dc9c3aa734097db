"""Who spoke when, measured: `python -m benchmarks.diarization [--output DIR]`.

Composites of several voices (`benchmarks.composite.speaker_composite`: turns of 2.5 to 35 s
with a second of silence after each): the test clips' real voices (JFK, the Harvard-sentences
reader, the two people of the stereo clip) and espeak-ng voice variants (other pitch and
formants) reading Harvard sentences. Each goes through a local Triton and the gateway twice:
`verbose_json` with word timestamps, then `diarized_json`. The reference speaker of each
moment is the turn it comes from, where the voice detector (unpadded) finds speech in it; the
answer's is the segment covering it. Reported per composite:

- the diarization error rate (missed speech, false alarm and speaker confusion, on a 10 ms
  grid, answer speakers mapped to reference speakers one to one, the largest overlaps first),
  with the usual forgiveness collar of 0.25 s around each reference boundary, and without;
- the same DER of the speaker turns alone, before any transcript (the speech embedded through
  the same Triton and clustered as a diarized request is, `speaker_turns_alone`): where Whisper
  writes no words for some speech the answer's segments miss it, and this tells that apart
  from the speaker model's own errors;
- the speaker count found against the true one;
- the speaker-attributed WER: each word of the transcript without diarization belongs to the
  reference speaker at its middle; each answer speaker's words (mapped as above) against
  that speaker's, the edit distances summed over the reference's words. The texts are the
  same, so it counts words given to the wrong speaker (or split off a speaker's turn);
- whether the text is the same, and the time with and without diarization per audio second
  (each the fastest of `REPEATS` requests, the two kinds alternating: on a shared machine the
  slowest say more about the neighbours than about diarization);
- what diarization adds, per audio second, measured where it is spent rather than end to end
  (less at the mercy of a busy machine's neighbours): the speaker model's compute time and
  Whisper's, from Triton's statistics, and the voice detector's pass over the file (the one
  the gateway adds for diarization), timed here; their ratio is the cost ratio.

Targets (issue 22): DER at most 10 %, the right count, a cost ratio of at most 1.3. Writes
`diarization-<date>-<host>.md` and `.json` to `--output`, with `--note` (what else ran on the
machine, say) under the title.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import time
from pathlib import Path

import aiohttp
import numpy as np
import soundfile

from benchmarks.composite import espeak_turns, speaker_composite
from benchmarks.stack import free_port, gateway_in_process, local_triton, triton_pool
from gateway.core.contract import SpeakerBackend
from gateway.core.diarization import cluster_windows, speaker_turns
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.diarize import embed_speech
from gateway.modes.vad import speech_probabilities
from gateway.server.settings import Settings
from testsupport.clips import DATA_DIR, load_audio
from testsupport.wer import edit_distance, normalized_words

GRID_S = 0.01
COLLAR_S = 0.25  # NIST's forgiveness collar: boundaries are not placed to 10 ms by anyone
MAX_DER, MAX_TIME_RATIO = 0.10, 1.3
REPEATS = 3
Span = tuple[str, float, float]  # speaker, start, end (seconds)
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
)
# espeak-ng variants the speaker model tells apart best (whole utterances 0.45-0.62 alike;
# en-gb+m1 and en-gb+f3, by contrast, are one voice to it: 0.94)
ESPEAK_VOICES = ("en-us+m3", "en-us+f4", "en-us+anika")


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
        "two speakers, whole clips": [("jfk", jfk), ("harvard", harvard), ("jfk", jfk)],
        "the stereo clip's two people": [("left", left), ("right", right), ("left", left)],
        "espeak-ng, two voices": espeak_turns(ESPEAK_VOICES[:2], SENTENCES, 8),
        "espeak-ng, three voices": espeak_turns(ESPEAK_VOICES, SENTENCES, 9),
    }


def _labels(spans: list[Span], grid: np.ndarray) -> list[str | None]:
    found: list[str | None] = [None] * grid.size
    for speaker, start, end in spans:
        for index in np.flatnonzero((grid >= start) & (grid < end)):
            found[index] = speaker
    return found


def speaker_mapping(reference: list[Span], answer: list[Span], duration: float) -> dict[str, str]:
    """Answer speaker → reference speaker, one to one, the largest overlaps first."""
    grid = np.arange(0.0, duration, GRID_S)
    overlap: dict[tuple[str, str], int] = {}
    for wanted, got in zip(_labels(reference, grid), _labels(answer, grid), strict=True):
        if wanted and got:
            overlap[(got, wanted)] = overlap.get((got, wanted), 0) + 1
    mapping: dict[str, str] = {}
    for (got, wanted), _ in sorted(overlap.items(), key=lambda item: -item[1]):
        if got not in mapping and wanted not in mapping.values():
            mapping[got] = wanted
    return mapping


def error_rate(
    reference: list[Span], answer: list[Span], duration: float, collar: float = 0.0
) -> dict[str, float]:
    """DER and its parts over the reference's speech, not scoring `collar` seconds either
    side of each reference boundary."""
    grid = np.arange(0.0, duration, GRID_S)
    scored = np.ones(grid.size, dtype=bool)
    for _, start, end in reference:
        for boundary in (start, end):
            scored &= np.abs(grid - boundary) >= collar
    mapping = speaker_mapping(reference, answer, duration)
    pairs = [
        (wanted, got)
        for wanted, got, keep in zip(
            _labels(reference, grid), _labels(answer, grid), scored, strict=True
        )
        if keep
    ]
    speech = sum(1 for wanted, _ in pairs if wanted)
    missed = sum(1 for wanted, got in pairs if wanted and not got)
    false_alarm = sum(1 for wanted, got in pairs if got and not wanted)
    confused = sum(1 for wanted, got in pairs if wanted and got and mapping.get(got) != wanted)
    return {
        "der": (missed + false_alarm + confused) / speech,
        "missed": missed / speech,
        "false_alarm": false_alarm / speech,
        "confusion": confused / speech,
    }


def _speaker_of(time_s: float, reference: list[Span]) -> str:
    """The reference speaker at `time_s`, or the nearest one's in a pause."""
    return min(reference, key=lambda span: max(span[1] - time_s, time_s - span[2], 0.0))[0]


def attributed_wer(
    reference: list[Span], words: list[dict], segments: list[dict], mapping: dict[str, str]
) -> float:
    """Speaker-attributed WER of the diarized `segments` against the plain transcript's
    `words`, each given the reference speaker at its middle."""
    wanted: dict[str, list[str]] = {}
    for word in words:
        speaker = _speaker_of((word["start"] + word["end"]) / 2, reference)
        wanted.setdefault(speaker, []).extend(normalized_words(word["word"]))
    heard: dict[str | None, list[str]] = {}
    for segment in segments:
        speaker = mapping.get(segment["speaker"])  # None: a speaker the mapping left out
        heard.setdefault(speaker, []).extend(normalized_words(segment["text"]))
    errors = len(heard.pop(None, []))
    errors += sum(edit_distance(wanted.get(s, []), heard.get(s, [])) for s in {*wanted, *heard})
    return errors / max(sum(len(w) for w in wanted.values()), 1)


async def speaker_turns_alone(backend: SpeakerBackend, audio: np.ndarray) -> list[Span]:
    """Who spoke when in `audio` before any transcript: the gateway's speaker turns (its speech
    embedded by the speaker model, clustered as a diarized request clusters it)."""
    speech = await embed_speech(backend, audio)
    labels = cluster_windows(speech.windows)
    turns = speaker_turns(speech.regions, speech.windows, labels)
    return [(str(turn.speaker), turn.start, turn.end) for turn in turns]


async def compute_seconds(session: aiohttp.ClientSession, triton_http: str) -> dict[str, float]:
    """Each model's compute time so far: Triton's statistics per batch it ran (input,
    inference, output); per request they would count a batch's time once for each request."""
    seconds = {}
    for model in ("whisper", "speaker"):
        async with session.get(f"{triton_http}/v2/models/{model}/stats") as response:
            response.raise_for_status()
            batches = (await response.json())["model_stats"][0]["batch_stats"]
        parts = ("compute_input", "compute_infer", "compute_output")
        seconds[model] = sum(int(batch[part]["ns"]) for batch in batches for part in parts) / 1e9
    return seconds


COLUMNS = (  # (heading, key, scale)
    ("s", "seconds", 1),
    ("DER %", "der", 100),
    ("missed %", "missed", 100),
    ("false alarm %", "false_alarm", 100),
    ("confusion %", "confusion", 100),
    ("DER % no collar", "der_no_collar", 100),
    ("turns DER %", "turns_der", 100),
    ("SA-WER %", "sa_wer", 100),
    ("Whisper s/audio s", "whisper_s_per_audio_s", 1),
    ("speaker s/audio s", "speaker_s_per_audio_s", 1),
    ("VAD s/audio s", "vad_s_per_audio_s", 1),
    ("cost ratio", "cost_ratio", 1),
    ("end-to-end ratio", "time_ratio", 1),
)


def write_report(output: Path, results: list[dict], note: str = "") -> Path:
    """The results as `diarization-<date>-<host>.md` (a table) and `.json` in `output`."""
    stem = output / f"diarization-{datetime.date.today().isoformat()}-{platform.node()}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Who spoke when, {datetime.date.today().isoformat()} on {platform.node()}",
        "",
        '`python -m benchmarks.diarization` (benchmarks/README.md, "Who spoke when"). ' + note,
        "",
        "| composite | speakers found | "
        + " | ".join(h for h, _, _ in COLUMNS)
        + " | same text | targets |",
        "| --- " * (len(COLUMNS) + 4) + "|",
    ]
    for row in results:
        cells = [f"{row[key] * scale:.4g}" for _, key, scale in COLUMNS]
        found = f"{row['speakers_found']} of {row['speakers']}"
        verdict = "met" if row["meets_targets"] else "not met"
        same = "yes" if row["same_text"] else "NO"
        lines.append(
            f"| {row['composite']} | {found} | " + " | ".join(cells) + f" | {same} | {verdict} |"
        )
    path = stem.with_suffix(".md")
    path.write_text("\n".join(lines) + "\n")
    return path


async def run(output: Path, note: str = "") -> list[dict[str, object]]:
    output.mkdir(parents=True, exist_ok=True)
    clips = voices()
    results: list[dict[str, object]] = []
    async with local_triton(output / "diarization-triton.log") as triton:
        settings = Settings(
            triton_url=triton.grpc_url, port=free_port(), max_upload_mb=64, max_audio_seconds=600
        )
        async with (
            gateway_in_process(settings),
            aiohttp.ClientSession() as session,
            triton_pool(settings) as pool,
        ):
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
                audio, reference = speaker_composite(plan)
                seconds = audio.size / SAMPLE_RATE
                path = output / f"diarization-{len(results)}.flac"
                soundfile.write(path, audio, SAMPLE_RATE)
                await post(path)  # warm
                plain_times, diarized_times = [], []
                before = await compute_seconds(session, triton.http_url)
                for _ in range(REPEATS):
                    plain, seconds_taken = await post(
                        path,
                        response_format="verbose_json",
                        **{"timestamp_granularities[]": "word"},
                    )
                    plain_times.append(seconds_taken)
                    diarized, seconds_taken = await post(path, response_format="diarized_json")
                    diarized_times.append(seconds_taken)
                plain_s, diarized_s = min(plain_times), min(diarized_times)
                after = await compute_seconds(session, triton.http_url)
                # each request transcribes the file once; only the diarized ones embed it
                whisper_s = (after["whisper"] - before["whisper"]) / (2 * REPEATS)
                speaker_s = (after["speaker"] - before["speaker"]) / REPEATS
                began = time.perf_counter()
                speech_probabilities(audio)
                vad_s = time.perf_counter() - began
                segments = diarized["segments"]
                answer = [(s["speaker"], s["start"], s["end"]) for s in segments]
                rates = error_rate(reference, answer, seconds, COLLAR_S)
                bare = error_rate(reference, answer, seconds)
                turns = await speaker_turns_alone(pool, audio)
                turn_rates = error_rate(reference, turns, seconds, COLLAR_S)
                mapping = speaker_mapping(reference, answer, seconds)
                found = len({speaker for speaker, _, _ in answer})
                true = len({speaker for speaker, _ in plan})
                results.append(
                    {
                        "composite": name,
                        "seconds": round(seconds, 1),
                        **{key: round(value, 4) for key, value in rates.items()},
                        "der_no_collar": round(bare["der"], 4),
                        "turns_der": round(turn_rates["der"], 4),
                        "speakers_found": found,
                        "speakers": true,
                        "sa_wer": round(
                            attributed_wer(reference, plain["words"], segments, mapping), 4
                        ),
                        "same_text": plain["text"] == diarized["text"],
                        "plain_s_per_audio_s": round(plain_s / seconds, 4),
                        "diarized_s_per_audio_s": round(diarized_s / seconds, 4),
                        "time_ratio": round(diarized_s / plain_s, 3),
                        "whisper_s_per_audio_s": round(whisper_s / seconds, 4),
                        "speaker_s_per_audio_s": round(speaker_s / seconds, 4),
                        "vad_s_per_audio_s": round(vad_s / seconds, 4),
                        "cost_ratio": round((whisper_s + speaker_s + vad_s) / whisper_s, 3),
                        "meets_targets": rates["der"] <= MAX_DER
                        and found == true
                        and (whisper_s + speaker_s + vad_s) / whisper_s <= MAX_TIME_RATIO,
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    print(write_report(output, results, note))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/tmp"))
    parser.add_argument("--note", default="", help="said under the title: the machine, its load")
    args = parser.parse_args()
    asyncio.run(run(args.output, args.note))


if __name__ == "__main__":
    main()
