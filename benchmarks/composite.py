"""Deterministic composites of real speech and silences, built from the shared clips.

`python -m benchmarks.composite OUT.wav` writes one (16 kHz mono PCM16) and prints its reference
text. `LONG`, for file mode, alternates the Harvard list (35.5 s) and JFK (11.0 s) seven times
each: 325.8 s of recorded speech (the clips keep their own pauses between sentences), separated
by silences of 0.8 s to 32 s (one longer than a Whisper window), about 6.7 min in all. `STREAM`,
for live streams, is JFK, the Harvard list and JFK again with pauses of 2 s and 4 s: 63.5 s.
Silences are filled with faint seeded noise. The reference text is the clips' reference texts in
the same order.

For diarization, `speaker_composite` joins turns of known speakers (a second of silence after
each) and says who speaks when: the voice detector's unpadded speech regions of each turn.
`espeak` reads a text in one of espeak-ng's voices, for turns of synthetic speakers.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.audio import HARVARD, JFK, Item, clip, load_audio
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import VadConfig, speech_probabilities, speech_regions

NOISE_RMS = 3e-4  # about -70 dBFS: a quiet room, not digital zero
SEED = 5


@dataclass(frozen=True)
class Composite:
    item: Item
    speech_seconds: float
    duration: float


@dataclass(frozen=True)
class Plan:
    name: str
    clips: tuple[str, ...]
    silences: tuple[float, ...]  # after each clip but the last, seconds


LONG = Plan(
    "composite",
    tuple(name for _ in range(7) for name in (HARVARD, JFK)),
    # short pauses, long ones, one above 30 s
    (1.5, 4.0, 0.8, 8.0, 2.5, 12.0, 3.0, 32.0, 1.2, 6.0, 2.0, 5.0, 1.0),
)
STREAM = Plan("stream-63s", (JFK, HARVARD, JFK), (2.0, 4.0))
PLANS = {plan.name: plan for plan in (LONG, STREAM)}


def build(path: Path, plan: Plan = LONG) -> Composite:
    """Write the composite to `path` (same bytes on every run) and describe it."""
    assert len(plan.silences) == len(plan.clips) - 1
    rng = np.random.default_rng(SEED)
    pieces, texts, speech = [], [], 0.0
    for index, name in enumerate(plan.clips):
        source = clip(name)
        audio = load_audio(source.path)
        pieces.append(audio)
        texts.append(source.text)
        speech += audio.size / SAMPLE_RATE
        if index < len(plan.silences):
            samples = int(plan.silences[index] * SAMPLE_RATE)
            pieces.append((rng.standard_normal(samples) * NOISE_RMS).astype(np.float32))
    audio = np.concatenate(pieces)
    import soundfile  # here: hosts that only read prepared audio (benchmarks.gpu) lack it

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return Composite(
        item=Item(plan.name, path, " ".join(texts)),
        speech_seconds=speech,
        duration=audio.size / SAMPLE_RATE,
    )


def speaker_composite(
    turns: list[tuple[str, np.ndarray]], pause_seconds: float = 1.0
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The turns (speaker, 16 kHz audio) one after the other, `pause_seconds` of silence after
    each; and (speaker, start, end) of the speech in it, as the voice detector (unpadded)
    finds it in each turn."""
    pieces, reference, cursor = [], [], 0
    unpadded = replace(VadConfig(), pad_seconds=0.0)
    pause = np.zeros(int(pause_seconds * SAMPLE_RATE), np.float32)
    for speaker, audio in turns:
        for start, end in speech_regions(speech_probabilities(audio), audio.size, unpadded):
            reference.append(
                (speaker, (cursor + start) / SAMPLE_RATE, (cursor + end) / SAMPLE_RATE)
            )
        pieces += [audio, pause]
        cursor += audio.size + pause.size
    return np.concatenate(pieces), reference


def espeak(voice: str, text: str) -> np.ndarray:
    """`text` read by espeak-ng in `voice` (e.g. en-us+f4: a variant's pitch and formants), as
    16 kHz mono float32."""
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run([executable, "-v", voice, "-w", str(path), text], check=True)
        return load_audio.__wrapped__(path)  # not cached: the file goes with the directory


def espeak_turns(
    voices: Sequence[str], sentences: Sequence[str], turns: int, first: int = 0
) -> list[tuple[str, np.ndarray]]:
    """`turns` turns of espeak-ng `voices` in rotation, each reading one or two (alternately)
    of `sentences`, the turn i from sentence `first + i` on (round the end)."""
    plan = []
    for index in range(turns):
        at = (index + first) % len(sentences)
        voice = voices[index % len(voices)]
        plan.append((voice, espeak(voice, " ".join(sentences[at : at + 1 + index % 2]))))
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write one of the benchmark's composites.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--plan", choices=sorted(PLANS), default=LONG.name)
    args = parser.parse_args(argv)
    composite = build(args.output, PLANS[args.plan])
    print(
        f"{args.output}: {composite.duration:.1f} s, {composite.speech_seconds:.1f} s of clips",
        file=sys.stderr,
    )
    print(composite.item.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
