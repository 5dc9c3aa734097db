"""The speech clips in tests/data and their known transcripts (`manifest.json`), decoded as the
service decodes them."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gateway.modes.audio import ffmpeg_command, ffmpeg_executable

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "tests" / "data"
ARTIFACTS_DIR = PROJECT_ROOT / "tests" / "artifacts"  # logs and screenshots tests leave behind
# A folder of clips decoded beforehand (`<file name>.npy`, as `save_decoded_clips` writes them),
# read instead of running ffmpeg: for a host without ffmpeg, such as the lent GPU machines
# (`benchmarks.gpu_kit` carries the clips decoded there to run the CUDA-only tests).
DECODED_CLIPS_ENV = "HERMES_DECODED_CLIPS"


def run_ffmpeg(*args: str) -> None:
    """The gateway's ffmpeg on `args` (inputs, filters, the output), quietly; fails loudly."""
    subprocess.run([ffmpeg_executable(), "-nostdin", "-loglevel", "error", *args], check=True)


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str

    @property
    def audio(self) -> np.ndarray:
        return load_audio(self.path)


@lru_cache(maxsize=16)
def load_audio(path: Path) -> np.ndarray:
    """16 kHz mono float32 through the same ffmpeg command the service uses (run
    synchronously, so fixtures and async tests alike can call it), or its copy decoded
    beforehand where `DECODED_CLIPS_ENV` names a folder."""
    if decoded := os.environ.get(DECODED_CLIPS_ENV):
        return np.load(Path(decoded) / f"{path.name}.npy")
    result = subprocess.run(ffmpeg_command(path), capture_output=True, check=True)
    return np.frombuffer(result.stdout, np.float32).copy()


def load_clips() -> dict[str, Clip]:
    """Every clip of the manifest by file name."""
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    return {
        item["file"]: Clip(DATA_DIR / item["file"], item.get("text", ""))
        for item in manifest["clips"]
    }


def save_decoded_clips(directory: Path) -> None:
    """Every clip of the manifest decoded, for `DECODED_CLIPS_ENV`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, clip in load_clips().items():
        np.save(directory / f"{name}.npy", clip.audio)


JFK_TEXT = load_clips()["jfk.flac"].text
