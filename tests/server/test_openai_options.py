"""OpenAI's transcription options beyond the basic form, against a scripted backend:
`include[]=logprobs` (in `json` and in the stream's events), `usage`, `chunking_strategy`
(mapped onto the voice detector, and the 400 for a malformed one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import ClientResponse, FormData
from multidict import MultiDict, MultiDictProxy

from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import VadConfig
from gateway.server.errors import ApiError
from gateway.server.openai_options import chunking_strategy
from testsupport.clips import DATA_DIR
from testsupport.scripted_backend import TOKEN_LOGPROB

JFK = DATA_DIR / "jfk.flac"
ROUTE = "/v1/audio/transcriptions"
USAGE = {"type": "duration", "seconds": 11}


def upload(path: Path = JFK, **fields: str | list[str]) -> FormData:
    form = FormData(default_to_multipart=True)
    form.add_field("file", path.read_bytes(), filename=path.name)
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            form.add_field(name, item)
    return form


def events(body: str) -> list[dict]:
    chunks = [chunk for chunk in body.split("\n\n") if chunk]
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks]


def joined(logprobs: list[dict]) -> tuple[str, str]:
    """The tokens joined, and their bytes joined and decoded."""
    text = "".join(item["token"] for item in logprobs)
    return text, bytes(b for item in logprobs for b in item["bytes"]).decode("utf-8")


async def param_error(response: ClientResponse, param: str) -> str:
    """The message of a 400 naming `param`, in OpenAI's shape."""
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "code", "param", "request_id"}, error
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_value",
        param,
    )
    return error["message"]


# --- include[]=logprobs ---------------------------------------------------------------------


async def test_logprobs_in_json_join_to_the_text(client, backend) -> None:
    reply = await client.post(ROUTE, data=upload(**{"include[]": "logprobs"}))
    assert reply.status == 200
    body = await reply.json()
    assert list(body) == ["text", "logprobs", "usage"] and body["usage"] == USAGE
    assert len(body["logprobs"]) == len(body["text"].split())  # a token per scripted word
    assert joined(body["logprobs"]) == (body["text"], body["text"])
    assert {item["logprob"] for item in body["logprobs"]} == {TOKEN_LOGPROB}
    assert [call.options.logprobs for call in backend.calls] == [True]


async def test_logprobs_only_when_asked(client, backend) -> None:
    body = await (await client.post(ROUTE, data=upload())).json()
    assert "logprobs" not in body
    assert [call.options.logprobs for call in backend.calls] == [False]


async def test_include_is_read_without_brackets_too(client, backend) -> None:
    body = await (await client.post(ROUTE, data=upload(include="logprobs"))).json()
    assert joined(body["logprobs"])[0] == body["text"]


async def test_logprobs_in_the_stream_events(client, tmp_path, jfk_audio) -> None:
    """JFK three times, 5 s apart: more speech than a window holds, so two windows, two
    deltas, each with its own tokens."""
    gap = np.zeros(5 * SAMPLE_RATE, np.float32)
    path = tmp_path / "thrice.wav"
    audio = np.concatenate([jfk_audio, gap, jfk_audio, gap, jfk_audio])
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    form = upload(path, stream="true", **{"include[]": "logprobs"})
    sent = events(await (await client.post(ROUTE, data=form)).text())
    deltas, done = sent[:-1], sent[-1]
    assert len(deltas) == 2 and all(e["type"] == "transcript.text.delta" for e in deltas)
    for event in deltas:
        assert joined(event["logprobs"]) == (event["delta"], event["delta"])
    assert done["type"] == "transcript.text.done"
    assert done["text"] == "".join(e["delta"] for e in deltas)
    assert done["logprobs"] == [item for e in deltas for item in e["logprobs"]]
    assert done["usage"] == {"type": "duration", "seconds": 43}


async def test_stream_events_without_logprobs_carry_none(client) -> None:
    sent = events(await (await client.post(ROUTE, data=upload(stream="true"))).text())
    assert all("logprobs" not in event for event in sent)
    assert sent[-1]["usage"] == USAGE


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt", "verbose_json"])
async def test_logprobs_with_a_format_that_cannot_carry_them(
    client, backend, response_format
) -> None:
    form = upload(response_format=response_format, **{"include[]": "logprobs"})
    message = await param_error(await client.post(ROUTE, data=form), "include")
    assert message == (
        "include[]=logprobs comes with response_format json (or stream=true), "
        f"not {response_format}"
    )
    assert backend.calls == []


async def test_an_unknown_include(client, backend) -> None:
    form = upload(**{"include[]": ["logprobs", "item.input_audio_transcription.logprobs"]})
    message = await param_error(await client.post(ROUTE, data=form), "include")
    assert message == (
        "include must be among logprobs, got item.input_audio_transcription.logprobs"
    )
    assert backend.calls == []


# --- chunking_strategy ----------------------------------------------------------------------


def fields(**values: str) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(values))


def test_auto_or_nothing_is_the_detector_as_it_is() -> None:
    assert chunking_strategy(fields()) == VadConfig()
    assert chunking_strategy(fields(chunking_strategy="auto")) == VadConfig()
    assert chunking_strategy(fields(chunking_strategy='"auto"')) == VadConfig()
    assert chunking_strategy(fields(chunking_strategy='{"type": "server_vad"}')) == VadConfig()


def test_server_vad_maps_onto_the_detector_in_either_form() -> None:
    expected = VadConfig(threshold=0.5, release=0.25, min_silence_seconds=0.5, pad_seconds=0.1)
    as_sdk_sends_it = {
        "chunking_strategy[type]": "server_vad",
        "chunking_strategy[threshold]": "0.5",
        "chunking_strategy[prefix_padding_ms]": "100",
        "chunking_strategy[silence_duration_ms]": "500",
    }
    assert chunking_strategy(fields(**as_sdk_sends_it)) == expected
    as_json = json.dumps(
        {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 100,
            "silence_duration_ms": 500,
        }
    )
    assert chunking_strategy(fields(chunking_strategy=as_json)) == expected


def test_server_vad_fields_left_out_keep_the_defaults() -> None:
    config = chunking_strategy(fields(chunking_strategy='{"type":"server_vad","threshold":0.6}'))
    assert config == VadConfig(threshold=0.6, release=0.3)


PREFIX = (
    'chunking_strategy must be "auto" or an object {"type": "server_vad", "threshold": 0-1, '
    '"prefix_padding_ms": ..., "silence_duration_ms": ...}: '
)


@pytest.mark.parametrize(
    ("form_fields", "problem"),
    [
        pytest.param({"chunking_strategy": "vad"}, "got 'vad'", id="word"),
        pytest.param({"chunking_strategy": "[1, 2]"}, "got '[1, 2]'", id="list"),
        pytest.param({"chunking_strategy": "{"}, "got '{'", id="bad-json"),
        pytest.param(
            {"chunking_strategy": '{"type": "semantic_vad"}'},
            "type must be server_vad, got 'semantic_vad'",
            id="type",
        ),
        pytest.param(
            {"chunking_strategy": '{"threshold": 0.5}'},
            "type must be server_vad, got None",
            id="no-type",
        ),
        pytest.param(
            {"chunking_strategy": '{"type": "server_vad", "threshold": 1.5}'},
            "threshold must be a number from 0 to 1, got 1.5",
            id="threshold-high",
        ),
        pytest.param(
            {"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "loud"},
            "threshold must be a number from 0 to 1, got 'loud'",
            id="threshold-word",
        ),
        pytest.param(
            {"chunking_strategy": '{"type": "server_vad", "threshold": true}'},
            "threshold must be a number from 0 to 1, got True",
            id="threshold-bool",
        ),
        pytest.param(
            {"chunking_strategy[type]": "server_vad", "chunking_strategy[prefix_padding_ms]": "-5"},
            "prefix_padding_ms must be a whole number of milliseconds from 0 to 10000, got '-5'",
            id="padding-negative",
        ),
        pytest.param(
            {"chunking_strategy": '{"type": "server_vad", "silence_duration_ms": 20000}'},
            "silence_duration_ms must be a whole number of milliseconds from 0 to 10000, got 20000",
            id="silence-long",
        ),
        pytest.param(
            {"chunking_strategy": '{"type": "server_vad", "silence_duration_ms": 0.5}'},
            "silence_duration_ms must be a whole number of milliseconds from 0 to 10000, got 0.5",
            id="silence-fraction",
        ),
        pytest.param(
            {"chunking_strategy": '{"type": "server_vad", "eagerness": "high"}'},
            "unknown field eagerness",
            id="unknown-field",
        ),
        pytest.param(
            {"chunking_strategy": "auto", "chunking_strategy[type]": "server_vad"},
            "given both as a value and as fields",
            id="both",
        ),
    ],
)
async def test_a_malformed_chunking_strategy_is_400(client, backend, form_fields, problem) -> None:
    reply = await client.post(ROUTE, data=upload(**form_fields))
    assert await param_error(reply, "chunking_strategy") == PREFIX + problem
    assert backend.calls == []
    with pytest.raises(ApiError):
        chunking_strategy(fields(**form_fields))


async def test_chunking_strategy_cuts_the_windows(client, backend, tmp_path, jfk_audio) -> None:
    """JFK between 3 s of silence: the padding kept around its speech lengthens its window, a
    threshold nothing reaches finds no speech at all, and `auto` is what no field does."""
    audio = jfk_audio
    quiet = np.zeros(3 * SAMPLE_RATE, np.float32)
    path = tmp_path / "padded.wav"
    soundfile.write(path, np.concatenate([quiet, audio, quiet]), SAMPLE_RATE, subtype="PCM_16")

    async def window_seconds(**form_fields: str) -> list[float]:
        backend.calls.clear()
        reply = await client.post(ROUTE, data=upload(path, **form_fields))
        assert reply.status == 200, await reply.text()
        return [call.seconds for call in backend.calls]

    def padding(milliseconds: int) -> dict[str, str]:
        return {
            "chunking_strategy[type]": "server_vad",
            "chunking_strategy[prefix_padding_ms]": str(milliseconds),
        }

    default = await window_seconds()
    assert await window_seconds(chunking_strategy="auto") == default
    [short], [long] = await window_seconds(**padding(0)), await window_seconds(**padding(1500))
    assert short < default[0] < long
    assert long - short >= 2 * 1.5 - 0.1  # padding before the speech and after it
    nothing = '{"type": "server_vad", "threshold": 1.0}'
    assert await window_seconds(chunking_strategy=nothing) == []
