"""Who spoke when, through the gateway and the real Triton (Whisper and the speaker model)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile
from aiohttp import FormData

from gateway.modes.audio import SAMPLE_RATE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_people(clips, tmp_path_factory):
    """JFK (11 s), two seconds of silence, then the Harvard-sentences reader (about 15 s)."""
    jfk, harvard = clips["jfk.flac"].audio, clips["OSR_us_000_0034_8k.wav"].audio
    audio = np.concatenate(
        [jfk, np.zeros(2 * SAMPLE_RATE, np.float32), harvard[: 15 * SAMPLE_RATE]]
    )
    path = tmp_path_factory.mktemp("diarization") / "two_people.flac"
    soundfile.write(path, audio, SAMPLE_RATE)
    return path, jfk.size / SAMPLE_RATE


def form(path, **fields: str) -> FormData:
    data = FormData(default_to_multipart=True)
    data.add_field("file", path.read_bytes(), filename=path.name)
    for name, value in fields.items():
        data.add_field(name, value)
    return data


async def test_two_people_one_after_the_other(gateway, two_people) -> None:
    path, change = two_people
    plain = await (await gateway.post("/v1/audio/transcriptions", data=form(path))).json()
    response = await gateway.post(
        "/v1/audio/transcriptions", data=form(path, response_format="diarized_json")
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["text"] == plain["text"]  # diarization never changes the text
    speakers = [(item["speaker"], item["start"], item["end"]) for item in body["segments"]]
    assert {speaker for speaker, _, _ in speakers} == {"A", "B"}, speakers
    assert all(speaker == "A" for speaker, _, end in speakers if end <= change), speakers
    assert all(speaker == "B" for speaker, start, _ in speakers if start >= change + 1), speakers


async def test_one_person_is_one_speaker(gateway, clips) -> None:
    response = await gateway.post(
        "/transcribe", data=form(clips["OSR_us_000_0034_8k.wav"].path, diarize="true")
    )
    body = await response.json()
    assert body["speakers"] == ["A"], body["segments"]


async def test_a_known_speaker_is_named(gateway, two_people, clips) -> None:
    """A reference of the Harvard reader (other sentences than the file's) names the reader;
    JFK, matched by no reference, is A."""
    path, change = two_people
    reader = clips["OSR_us_000_0034_8k.wav"].audio[20 * SAMPLE_RATE : 26 * SAMPLE_RATE]
    buffer = io.BytesIO()
    soundfile.write(buffer, reader, SAMPLE_RATE, format="OGG", subtype="VORBIS")
    reference = "data:audio/ogg;base64," + base64.b64encode(buffer.getvalue()).decode()
    data = form(path, response_format="diarized_json")
    data.add_field("known_speaker_names[]", "Reader")
    data.add_field("known_speaker_references[]", reference)
    response = await gateway.post("/v1/audio/transcriptions", data=data)
    assert response.status == 200, await response.text()
    speakers = [
        (item["speaker"], item["start"], item["end"])
        for item in (await response.json())["segments"]
    ]
    assert {speaker for speaker, _, _ in speakers} == {"A", "Reader"}, speakers
    assert all(speaker == "A" for speaker, _, end in speakers if end <= change), speakers
    assert all(speaker == "Reader" for speaker, start, _ in speakers if start >= change + 1), (
        speakers
    )
