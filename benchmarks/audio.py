"""The benchmark's audio: the shared clips, decoded by the same ffmpeg command as the service."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gateway.modes.audio import SAMPLE_RATE, ffmpeg_command

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "tests" / "data"
JFK = "jfk.flac"
HARVARD = "OSR_us_000_0034_8k.wav"


@dataclass(frozen=True)
class Item:
    """One piece of audio to transcribe: the file the service is sent, and its reference."""

    name: str
    path: Path
    text: str

    @property
    def audio(self) -> np.ndarray:
        return load_audio(self.path)

    @property
    def duration(self) -> float:
        return self.audio.size / SAMPLE_RATE


@lru_cache(maxsize=8)
def load_audio(path: Path) -> np.ndarray:
    """16 kHz mono float32, exactly as the gateway decodes an upload; a `.npy` file holds
    samples decoded so beforehand (PCM16, see `benchmarks.gpu`), for hosts with no ffmpeg."""
    if path.suffix == ".npy":
        return np.load(path).astype(np.float32) / 32768
    result = subprocess.run(ffmpeg_command(path), capture_output=True, check=True)
    return np.frombuffer(result.stdout, np.float32).copy()


def reference_texts() -> dict[str, str]:
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    return {clip["file"]: clip.get("text", "") for clip in manifest["clips"]}


def clip(name: str) -> Item:
    return Item(name, DATA_DIR / name, reference_texts()[name])


# What `python -m benchmarks.gpu --prepare DIR` decodes beforehand, for a host without ffmpeg
PREPARED = ("jfk", "harvard", "stream-63s")


def prepared_items(directory: Path) -> dict[str, Item]:
    """The items of `PREPARED` as `--prepare` wrote them to `directory` (PCM16 `.npy`)."""
    texts = json.loads((directory / "texts.json").read_text())
    return {name: Item(name, directory / f"{name}.npy", texts[name]) for name in PREPARED}


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
