"""What /openapi.json is for: a client generated from it (openapi-python-client) lists the
models and transcribes with the gateway's API keys on, its answers parsed into the documented
types, against the scripted backend."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from gateway.server.app import PUBLIC_RESOURCES, create_app
from gateway.server.openapi import document
from testsupport.clips import DATA_DIR
from testsupport.net import serve
from testsupport.scripted_backend import ScriptedBackend

from .conftest import SETTINGS

KEY = "hk-generated-client-1"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def hermes_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client package generated from the document, imported."""
    directory = tmp_path_factory.mktemp("generated")
    spec = directory / "openapi.json"
    spec.write_text(json.dumps(document(PUBLIC_RESOURCES)))
    subprocess.run(
        [GENERATOR, "generate", "--path", spec, "--meta", "none", "--output-path", "hermes_api"],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module("hermes_api")
    finally:
        sys.path.remove(str(directory))


def module(package: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.{name}")


async def test_a_generated_client_calls_the_gateway(hermes_client: ModuleType) -> None:
    models_api = module(hermes_client, "api.open_ai.list_models")
    transcription_api = module(hermes_client, "api.open_ai.create_transcription")
    native_api = module(hermes_client, "api.gateway.transcribe")
    models, types = module(hermes_client, "models"), module(hermes_client, "types")
    app = create_app(replace(SETTINGS, api_keys=KEY), backend=ScriptedBackend())
    async with serve(app) as url:
        client = hermes_client.AuthenticatedClient(base_url=url, token=KEY)
        listed = await models_api.asyncio(client=client)
        assert [model.id for model in listed.data] == ["scripted", "whisper-1"]

        def audio() -> object:
            return types.File(payload=(DATA_DIR / "jfk.flac").open("rb"), file_name="jfk.flac")

        expected = {
            "json": models.TranscriptionJson,
            "verbose_json": models.TranscriptionVerboseJson,
            "diarized_json": models.TranscriptionDiarizedJson,
        }
        for response_format, kind in expected.items():
            body = models.CreateTranscriptionBody(
                file=audio(),
                response_format=models.CreateTranscriptionBodyResponseFormat(response_format),
            )
            answer = await transcription_api.asyncio(client=client, body=body)
            assert isinstance(answer, kind), answer
            assert answer.text.startswith("w1 w2")

        body = models.TranscribeFilesBody(file=audio())
        answer = await native_api.asyncio(client=client, body=body, word_timestamps=True)
        assert isinstance(answer, models.Transcript) and answer.segments[0].words

        anonymous = hermes_client.AuthenticatedClient(base_url=url, token="wrong")
        refused = await models_api.asyncio(client=anonymous)
        assert isinstance(refused, models.Error) and refused.error.code == "invalid_api_key"
