"""Fixtures for tests through the gateway: the real app in front of the session's Triton."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp.test_utils import TestClient

from gateway.modes.audio import SAMPLE_RATE
from gateway.server.app import SERVER_OPTIONS, create_app
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton
from testsupport.clips import Clip, run_ffmpeg


@pytest.fixture
def gateway_settings(triton: LocalTriton) -> Settings:
    return Settings(triton_url=triton.grpc_url, max_upload_mb=8, max_audio_seconds=600)


@pytest.fixture
def make_gateway(aiohttp_client) -> Callable:
    """Start the real gateway application with the given settings on a local port."""

    async def start(settings: Settings) -> TestClient:
        return await aiohttp_client(create_app(settings), server_kwargs=SERVER_OPTIONS)

    return start


@pytest.fixture
async def gateway(make_gateway, gateway_settings: Settings) -> TestClient:
    return await make_gateway(gateway_settings)


@pytest.fixture(scope="session")
def converted(clips: dict[str, Clip], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """jfk.flac re-encoded as users send it: compressed formats, 8 kHz, stereo, video."""
    directory = tmp_path_factory.mktemp("formats")
    source = clips["jfk.flac"].path
    recipes = {
        "jfk.mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
        "jfk.ogg": ["-c:a", "libopus", "-b:a", "32k"],
        "jfk.m4a": ["-c:a", "aac", "-b:a", "64k"],
        "jfk.webm": ["-c:a", "libopus"],
        "jfk-8k.wav": ["-ar", "8000", "-ac", "1", "-c:a", "pcm_s16le"],
        "jfk-stereo.wav": ["-ac", "2", "-c:a", "pcm_s16le"],
    }
    files = {}
    for name, args in recipes.items():
        files[name] = directory / name
        run_ffmpeg("-i", str(source), *args, str(files[name]))
    return files


@dataclass(frozen=True)
class Composite:
    path: Path
    text: str
    duration: float
    silences: tuple[tuple[float, float], ...]  # (start, end) of the stretches without speech


@pytest.fixture(scope="session")
def composite(clips: dict[str, Clip], tmp_path_factory: pytest.TempPathFactory) -> Composite:
    """Over 3 minutes of the clips and silences (one longer than a window), with faint noise."""
    jfk, harvard = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    plan = [jfk, 7.0, harvard, 20.0, jfk, 4.0, harvard, 31.0, jfk, 3.0, harvard]
    pieces, texts, silences, cursor = [], [], [], 0.0
    for item in plan:
        if isinstance(item, float):
            pieces.append(np.zeros(int(item * SAMPLE_RATE), np.float32))
            silences.append((cursor, cursor + item))
            cursor += item
        else:
            audio = item.audio
            pieces.append(audio)
            texts.append(item.text)
            cursor += audio.size / SAMPLE_RATE
    audio = np.concatenate(pieces)
    audio += np.random.default_rng(3).standard_normal(audio.size).astype(np.float32) * 3e-4
    path = tmp_path_factory.mktemp("composite") / "composite.flac"
    soundfile.write(path, audio, SAMPLE_RATE)
    return Composite(path, " ".join(texts), audio.size / SAMPLE_RATE, tuple(silences))
