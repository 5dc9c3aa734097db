"""OpenAI's models API and `/v1/audio/translations` against a scripted backend: the models
listed are what the backend says it serves, a `model` it does not serve is OpenAI's 404, and
translating needs multilingual weights. The same checks with the official `openai` SDK."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from aiohttp import ClientResponse, FormData

from gateway.core.contract import TranscribeOptions
from testsupport.clips import DATA_DIR
from testsupport.scripted_backend import ScriptedBackend

JFK = DATA_DIR / "jfk.flac"
KEY = "hk-models-test-1"


def upload(path: Path = JFK, **fields: str) -> FormData:
    form = FormData(default_to_multipart=True)
    form.add_field("file", path.read_bytes(), filename=path.name)
    for name, value in fields.items():
        form.add_field(name, value)
    return form


async def openai_error(response: ClientResponse, status: int, code: str) -> dict[str, str]:
    """The error of an answer in OpenAI's shape, after checking its status and code."""
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == code, error
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    return error


@pytest.fixture
def multilingual() -> ScriptedBackend:
    return ScriptedBackend(weights="base", language="de")


@pytest.fixture
def english_only() -> ScriptedBackend:
    return ScriptedBackend(weights="tiny.en")


def sdk(client) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key="not-checked", max_retries=0
    )


# --- /v1/models ------------------------------------------------------------------------------


async def test_models_lists_the_served_weights_and_the_whisper_1_alias(
    make_client, multilingual
) -> None:
    client = await make_client(multilingual)
    before = int(time.time())
    reply = await client.get("/v1/models")
    assert reply.status == 200 and reply.content_type == "application/json"
    body = await reply.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["base", "whisper-1"]
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and model["owned_by"] == "hermes"
        assert before - 1 <= model["created"] <= time.time()
    # the same `created` on every call: when this gateway first saw the weights served
    assert (await (await client.get("/v1/models")).json()) == body


async def test_models_follow_what_the_backend_serves(make_client, english_only) -> None:
    client = await make_client(english_only)
    body = await (await client.get("/v1/models")).json()
    assert [model["id"] for model in body["data"]] == ["tiny.en", "whisper-1"]


@pytest.mark.parametrize("name", ["base", "whisper-1"])
async def test_a_served_model_is_retrieved(make_client, multilingual, name) -> None:
    client = await make_client(multilingual)
    reply = await client.get(f"/v1/models/{name}")
    assert reply.status == 200
    model = await reply.json()
    assert model["id"] == name and model["object"] == "model"
    listed = await (await client.get("/v1/models")).json()
    assert model in listed["data"]


@pytest.mark.parametrize("name", ["tiny.en", "whisper-2", "gpt-4o-transcribe"])
async def test_a_model_not_served_is_openais_404(make_client, multilingual, name) -> None:
    client = await make_client(multilingual)
    error = await openai_error(await client.get(f"/v1/models/{name}"), 404, "model_not_found")
    assert error["param"] == "model"
    assert error["message"].startswith(f"The model `{name}` does not exist")
    assert "`base`" in error["message"]  # and says what is served


async def test_models_when_the_backend_cannot_say_is_a_503(make_client, multilingual) -> None:
    multilingual.ready = False
    client = await make_client(multilingual)
    reply = await client.get("/v1/models")
    await openai_error(reply, 503, "model_unavailable")
    assert reply.headers["Retry-After"]


async def test_models_need_the_api_key_when_keys_are_on(make_client, multilingual) -> None:
    client = await make_client(multilingual, api_keys=KEY)
    assert (await client.get("/v1/models")).status == 401
    keyed = await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert keyed.status == 200


async def test_the_sdk_lists_and_retrieves_models(make_client, multilingual) -> None:
    client = sdk(await make_client(multilingual))
    listed = [model.id async for model in client.models.list()]
    assert listed == ["base", "whisper-1"]
    alias = await client.models.retrieve("whisper-1")
    assert alias.id == "whisper-1" and alias.object == "model" and alias.owned_by == "hermes"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("whisper-2")
    assert missing.value.code == "model_not_found" and missing.value.param == "model"


# --- the model field of uploads ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["whisper-1", "base"])
async def test_a_transcription_naming_a_served_model_is_served(
    make_client, multilingual, name
) -> None:
    client = await make_client(multilingual)
    reply = await client.post("/v1/audio/transcriptions", data=upload(model=name))
    assert reply.status == 200, await reply.text()
    assert [call.options.task for call in multilingual.calls] == ["transcribe"]


async def test_a_transcription_naming_another_model_is_a_404_before_any_work(
    make_client, multilingual
) -> None:
    client = await make_client(multilingual)
    reply = await client.post("/v1/audio/transcriptions", data=upload(model="whisper-large-v3"))
    error = await openai_error(reply, 404, "model_not_found")
    assert error["param"] == "model"
    assert error["message"].startswith("The model `whisper-large-v3` does not exist")
    assert multilingual.calls == []


async def test_a_transcription_without_a_model_is_served(make_client, multilingual) -> None:
    client = await make_client(multilingual)
    reply = await client.post("/v1/audio/transcriptions", data=upload())
    assert reply.status == 200, await reply.text()


# --- /v1/audio/translations ----------------------------------------------------------------------


async def test_a_translation_runs_the_translate_task(make_client, multilingual) -> None:
    client = await make_client(multilingual)
    reply = await client.post(
        "/v1/audio/translations",
        data=upload(model="whisper-1", prompt="Kennedy", temperature="0.2"),
    )
    assert reply.status == 200, await reply.text()
    body = await reply.json()
    assert body["text"] and body["usage"] == {"type": "duration", "seconds": 11}
    assert {call.options for call in multilingual.calls} == {
        TranscribeOptions(task="translate", prompt="Kennedy", temperature=0.2)
    }


async def test_a_translation_in_verbose_json_says_translate_and_the_language_heard(
    make_client, multilingual
) -> None:
    client = await make_client(multilingual)
    reply = await client.post(
        "/v1/audio/translations", data=upload(model="base", response_format="verbose_json")
    )
    body = await reply.json()
    assert body["task"] == "translate"
    assert body["language"] == "german"  # what the (scripted) model detected
    assert body["segments"] and body["duration"] == pytest.approx(11.0, abs=0.01)


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
async def test_a_translation_in_the_other_formats(make_client, multilingual, response_format):
    client = await make_client(multilingual)
    reply = await client.post(
        "/v1/audio/translations", data=upload(response_format=response_format)
    )
    assert reply.status == 200 and (await reply.text()).strip()


async def test_english_only_weights_cannot_translate(make_client, english_only) -> None:
    client = await make_client(english_only)
    reply = await client.post("/v1/audio/translations", data=upload(model="whisper-1"))
    error = await openai_error(reply, 400, "model_not_multilingual")
    assert error["param"] == "model"
    assert error["message"].startswith("tiny.en is English-only and cannot translate")
    assert "make run WEIGHTS=base" in error["message"]
    assert english_only.calls == []  # refused before the audio was decoded or sent


async def test_a_translation_naming_another_model_is_a_404(make_client, multilingual) -> None:
    client = await make_client(multilingual)
    reply = await client.post("/v1/audio/translations", data=upload(model="tiny"))
    await openai_error(reply, 404, "model_not_found")
    assert multilingual.calls == []


async def test_a_translation_with_a_bad_option_is_a_400(make_client, multilingual) -> None:
    client = await make_client(multilingual)
    reply = await client.post("/v1/audio/translations", data=upload(response_format="xml"))
    await openai_error(reply, 400, "invalid_value")
    reply = await client.post("/v1/audio/translations", data=upload(temperature="7"))
    await openai_error(reply, 400, "invalid_value")


# openai 3.x marks `audio.translations.create` deprecated; the call is OpenAI's API still
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
async def test_the_sdk_translates(make_client, multilingual, english_only) -> None:
    client = sdk(await make_client(multilingual))
    translation = await client.audio.translations.create(model="whisper-1", file=JFK.open("rb"))
    assert translation.text
    verbose = await client.audio.translations.create(
        model="whisper-1", file=JFK.open("rb"), response_format="verbose_json"
    )
    assert verbose.language == "german" and verbose.segments
    refused = sdk(await make_client(english_only))
    with pytest.raises(openai.BadRequestError) as english:
        await refused.audio.translations.create(model="whisper-1", file=JFK.open("rb"))
    assert english.value.code == "model_not_multilingual"
