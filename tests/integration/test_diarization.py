"""Who spoke when, through the gateway and the real Triton (Whisper and the speaker model)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile
from aiohttp import FormData

from gateway.modes.audio import SAMPLE_RATE
from testsupport.streams import assert_protocol, pcm16, stream

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


async def test_a_live_stream_names_each_final_s_speaker_for_the_life_of_the_stream(
    gateway, clips
) -> None:
    """JFK, the Harvard reader, then JFK again, two seconds of silence between them, streamed
    in real time with `diarize`: every final within JFK's turns is one speaker, every final
    within the reader's the other, and JFK is the same speaker when he comes back."""
    jfk, harvard = clips["jfk.flac"].audio, clips["OSR_us_000_0034_8k.wav"].audio
    quiet = np.zeros(2 * SAMPLE_RATE, np.float32)
    turns = [("jfk", jfk), ("reader", harvard[: 15 * SAMPLE_RATE]), ("jfk", jfk[: 6 * SAMPLE_RATE])]
    spans, cursor = [], 0.0
    for who, audio in turns:
        spans.append((who, cursor, cursor + audio.size / SAMPLE_RATE))
        cursor += (audio.size + quiet.size) / SAMPLE_RATE
    audio = np.concatenate([piece for _, turn in turns for piece in (turn, quiet)])
    run = await stream(
        gateway, pcm16(audio), bytes_per_second=32000, pace=1.0, config={"diarize": True}
    )
    assert_protocol(run)
    finals = run.of_type("final")
    assert all("speaker" in final for final in finals), finals
    speaker_of: dict[str, set[str]] = {}
    for final in finals:
        for who, start, end in spans:
            if start - 0.3 <= final["start"] and final["end"] <= end + 0.5:
                speaker_of.setdefault(who, set()).add(final["speaker"])
    heard = [(f["speaker"], f["start"], f["end"], f["text"]) for f in finals]
    assert speaker_of == {"jfk": {"A"}, "reader": {"B"}}, heard
