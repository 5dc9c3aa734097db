"""Every example of /openapi.json sent to the real gateway in front of the real Triton (tiny.en
and the speaker model): each answer has the documented status and content type and a body its
schema describes, and the transcription examples say what JFK said.

Translations need multilingual weights; with tiny.en only their error examples (answered
before the weights matter) are sent here: test_multilingual.py translates with base.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.server.app import PUBLIC_RESOURCES
from gateway.server.openapi import document
from testsupport.clips import Clip
from testsupport.openapi import Example, check_answer, examples, expected_response, send
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration

DOCUMENT = document(PUBLIC_RESOURCES)


def english_only(example: Example) -> bool:
    """An example that tiny.en can answer as documented."""
    translated = example.path == "/v1/audio/translations"
    return not translated or expected_response(DOCUMENT, example)[0] != "200"


async def test_the_gateway_serves_the_document(gateway) -> None:
    response = await gateway.get("/openapi.json")
    assert await response.json() == json.loads(json.dumps(DOCUMENT))


@pytest.mark.parametrize(
    "example", [item for item in examples(DOCUMENT) if english_only(item)], ids=str
)
async def test_every_example_gets_the_documented_answer(
    gateway, clips: dict[str, Clip], example: Example
) -> None:
    response = await send(gateway, example)
    await check_answer(DOCUMENT, example, response)
    if example.name.startswith("jfk") and response.status == 200:
        assert word_error_rate(clips["jfk.flac"].text, transcript(await response.text())) < 0.1


def transcript(body: str) -> str:
    """The text of an answer in any format (the cue lines of subtitles, a stream's last
    event)."""
    if body.startswith("data: "):
        last: dict[str, Any] = json.loads(body.strip().split("\n\n")[-1].removeprefix("data: "))
        return last.get("text") or last["transcript"]["text"]
    if body.lstrip().startswith("{"):
        return json.loads(body)["text"]
    cues = [
        line
        for line in body.splitlines()
        if line and "-->" not in line and not line.isdigit() and line != "WEBVTT"
    ]
    return " ".join(cues)
