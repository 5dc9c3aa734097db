"""Fixtures for the route and protocol tests: the real application (routes, middlewares,
decoding, voice detection, streaming sessions) in front of a `ScriptedBackend`, no Triton."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

import gateway.server.app as app_module
from gateway.server.app import SERVER_OPTIONS, create_app
from gateway.server.keys import STREAM_VAD
from gateway.server.settings import Settings
from testsupport.clips import DATA_DIR, load_audio
from testsupport.scripted_backend import ScriptedBackend

# Small and quick: beats of 0.25 s, short idle and shutdown timeouts, no heap trimming task.
SETTINGS = Settings(
    max_upload_mb=2,
    max_audio_seconds=60,
    stream_step_seconds=0.25,
    stream_min_step_seconds=0.25,
    stream_idle_timeout_s=10,
    shutdown_timeout_s=5,
    heap_trim_interval_s=0,
)

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture(autouse=True)
def no_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """An application made without a backend would reach for Triton: fail instead."""

    def refuse(app):
        raise AssertionError("a route test reached for Triton: pass backend= to create_app")

    monkeypatch.setattr(app_module, "triton_pool", refuse)


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def make_client(aiohttp_client, backend: ScriptedBackend) -> MakeClient:
    """A client of the application with these settings changed (and another backend)."""

    default = backend

    async def start(backend: ScriptedBackend | None = None, **changes) -> TestClient:
        settings = replace(SETTINGS, **changes)
        app = create_app(settings, backend=backend or default)
        return await aiohttp_client(app, server_kwargs=SERVER_OPTIONS)

    return start


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()


@pytest.fixture
def held_detector(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The live streams' voice detector, held: its rounds wait in their threads until the
    test sets the event this returns (or fail after 10 s)."""
    scorer = client.app[STREAM_VAD]
    gate = threading.Event()
    score = scorer.score

    def held(*args: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert gate.wait(10), "the test never let the detector go on"
        return score(*args)

    monkeypatch.setattr(scorer, "score", held)
    yield gate
    gate.set()  # no round left waiting in a thread


@pytest.fixture(scope="session")
def jfk_audio() -> np.ndarray:
    """jfk.flac as the gateway decodes it: 11 s of 16 kHz mono float32."""
    return load_audio(DATA_DIR / "jfk.flac")
