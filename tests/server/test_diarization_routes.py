"""Who spoke when on the file routes, against the scripted backend: `diarize=true` on
/transcribe and /upload, `response_format=diarized_json` on /v1/audio/transcriptions.

The scripted backend's speaker embeddings tell full-band speech from speech low-passed below
1 kHz (testsupport/scripted_backend.py): jfk.flac, a second of silence and jfk.flac low-passed
are two speakers, one after the other.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import FormData

from gateway.core.contract import AsrUnavailable
from gateway.modes import diarize, vad
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import score_speech
from testsupport.scripted_backend import ScriptedBackend, low_passed

ROUTE = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def two_voices(jfk_audio: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = np.concatenate([jfk_audio, np.zeros(SAMPLE_RATE, np.float32), low_passed(jfk_audio)])
    path = tmp_path_factory.mktemp("voices") / "two_voices.wav"
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path


def data_url(audio: np.ndarray) -> str:
    """Ogg Vorbis, as a client sends a reference: small enough for a form field (64 KB)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLE_RATE, format="OGG", subtype="VORBIS")
    return "data:audio/ogg;base64," + base64.b64encode(buffer.getvalue()).decode()


def form(path: Path, **fields: str | list[str]) -> FormData:
    data = FormData(default_to_multipart=True)
    data.add_field("file", path.read_bytes(), filename=path.name)
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            data.add_field(name, item)
    return data


@pytest.mark.parametrize("route", ["/transcribe", "/upload"])
async def test_diarize_labels_each_segment_and_keeps_the_text(client, two_voices, route) -> None:
    plain = await (await client.post(route, data=form(two_voices))).json()
    response = await client.post(route, data=form(two_voices, diarize="true"))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["text"] == plain["text"]  # diarization never changes the text
    assert body["speakers"] == ["A", "B"]
    segments = body["segments"]
    assert all("words" not in item for item in segments)  # not asked for
    first_voice = [item["speaker"] for item in segments if item["end"] <= 11.0]
    second_voice = [item["speaker"] for item in segments if item["start"] >= 12.0]
    assert first_voice and set(first_voice) == {"A"}
    assert second_voice and set(second_voice) == {"B"}
    assert "".join(item["text"] for item in segments).strip() == body["text"]


async def test_diarize_with_words_keeps_their_timestamps(client, two_voices) -> None:
    plain = await (
        await client.post("/transcribe", data=form(two_voices, word_timestamps="true"))
    ).json()
    body = await (
        await client.post(
            "/transcribe", data=form(two_voices, word_timestamps="true", diarize="true")
        )
    ).json()
    words = [word for item in body["segments"] for word in item["words"]]
    assert words == [word for item in plain["segments"] for word in item["words"]]


@pytest.mark.parametrize(
    ("route", "fields", "times_only"),
    [
        ("/transcribe", {"diarize": "true"}, True),
        ("/transcribe", {"diarize": "true", "word_timestamps": "true"}, False),
        (ROUTE, {"response_format": "diarized_json"}, True),
        (ROUTE, {"response_format": "srt", "diarize": "true"}, True),
        (ROUTE, {"response_format": "verbose_json", "timestamp_granularities[]": "word"}, False),
    ],
)
async def test_words_placed_for_speakers_alone_are_asked_for_their_times_only(
    client, backend, two_voices, route, fields, times_only
) -> None:
    """Diarization places every word by its times; the model computes how sure it was of
    each word (a product over the whole vocabulary per token) only where the answer shows
    words."""
    response = await client.post(route, data=form(two_voices, **fields))
    assert response.status == 200, await response.text()
    asked = {(call.options.word_timestamps, call.options.word_times_only) for call in backend.calls}
    assert asked == {(True, times_only)}


async def test_max_speakers_one_is_one_speaker(client, two_voices) -> None:
    body = await (
        await client.post("/transcribe", data=form(two_voices, diarize="true", max_speakers="1"))
    ).json()
    assert body["speakers"] == ["A"]


async def test_diarized_json_in_openais_shape(client, two_voices) -> None:
    response = await client.post(ROUTE, data=form(two_voices, response_format="diarized_json"))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) == {"task", "duration", "text", "segments", "usage"}
    assert body["task"] == "transcribe" and body["duration"] == 23.0
    assert body["usage"] == {"type": "duration", "seconds": 23}
    segments = body["segments"]
    for index, item in enumerate(segments):
        assert set(item) == {"type", "id", "start", "end", "text", "speaker"}
        assert item["type"] == "transcript.text.segment" and item["id"] == f"seg_{index}"
    assert [item["speaker"] for item in segments][0] == "A"
    assert [item["speaker"] for item in segments][-1] == "B"
    assert " ".join(item["text"] for item in segments) == body["text"]


async def test_srt_and_vtt_carry_the_speakers_as_voice_tags(client, two_voices) -> None:
    diarized = await (
        await client.post(ROUTE, data=form(two_voices, response_format="diarized_json"))
    ).json()
    expected = [(item["speaker"], item["text"]) for item in diarized["segments"]]
    vtt = await (
        await client.post(ROUTE, data=form(two_voices, response_format="vtt", diarize="true"))
    ).text()
    cues = [block.splitlines() for block in vtt.split("\n\n")[1:] if block]
    assert [cue[1] for cue in cues] == [f"<v {speaker}>{text}" for speaker, text in expected]
    srt = await (
        await client.post(ROUTE, data=form(two_voices, response_format="srt", diarize="true"))
    ).text()
    cues = [block.splitlines() for block in srt.split("\n\n") if block]
    assert [cue[2] for cue in cues] == [f"[{speaker}] {text}" for speaker, text in expected]
    plain = await (await client.post(ROUTE, data=form(two_voices, response_format="vtt"))).text()
    assert "<v " not in plain


def events(body: str) -> list[dict]:
    chunks = [chunk for chunk in body.split("\n\n") if chunk]
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks]


async def test_diarized_json_streams_segment_events_before_done(client, two_voices) -> None:
    plain = await (
        await client.post(ROUTE, data=form(two_voices, response_format="diarized_json"))
    ).json()
    response = await client.post(
        ROUTE, data=form(two_voices, response_format="diarized_json", stream="true")
    )
    assert response.headers["Content-Type"] == "text/event-stream"
    sent = events(await response.text())
    types = [event["type"] for event in sent]
    deltas = types.count("transcript.text.delta")
    assert deltas >= 1 and types[:deltas] == ["transcript.text.delta"] * deltas
    assert types[deltas:] == ["transcript.text.segment"] * len(plain["segments"]) + [
        "transcript.text.done"
    ]
    assert sent[deltas:-1] == plain["segments"]
    assert sent[-1]["text"] == plain["text"]
    assert "".join(event["delta"] for event in sent[:deltas]) == plain["text"]


async def test_the_native_stream_ends_with_the_speakers(client, two_voices) -> None:
    plain = await (await client.post("/transcribe", data=form(two_voices, diarize="true"))).json()
    response = await client.post(
        "/transcribe", data=form(two_voices, diarize="true", stream="true")
    )
    sent = events(await response.text())
    assert sent[-1] == {"type": "done", "transcript": plain}


async def test_a_failure_of_the_speaker_model_is_the_streams_last_event(
    two_voices, make_client
) -> None:
    backend = ScriptedBackend()
    client = await make_client(backend)

    async def unavailable(audio):
        raise AsrUnavailable("speaker model unavailable: not ready")

    backend.embed_speakers = unavailable
    response = await client.post(
        ROUTE, data=form(two_voices, response_format="diarized_json", stream="true")
    )
    last = events(await response.text())[-1]
    assert last["type"] == "error" and last["error"]["code"] == "model_unavailable"
    response = await client.post("/transcribe", data=form(two_voices, diarize="true"))
    assert response.status == 503


async def test_the_speaker_model_is_called_on_the_speech_only(two_voices, make_client) -> None:
    backend = ScriptedBackend()
    client = await make_client(backend)
    await client.post("/transcribe", data=form(two_voices))
    assert backend.speaker_calls == []  # not asked for
    await client.post("/transcribe", data=form(two_voices, diarize="true"))
    # the voice detector's speech regions, not the silence between the voices
    assert len(backend.speaker_calls) >= 2 and sum(backend.speaker_calls) < 23.0


@pytest.mark.parametrize(
    ("route", "fields"),
    [
        ("/transcribe", {"diarize": "true"}),
        (ROUTE, {"response_format": "diarized_json"}),
        (ROUTE, {"response_format": "diarized_json", "stream": "true"}),
    ],
)
async def test_a_diarized_upload_is_scored_by_the_detector_once(
    client, two_voices, monkeypatch, route, fields
) -> None:
    """The windows and the speaker model's regions come from the same scores."""
    scored: list[int] = []

    async def counted(audio: np.ndarray) -> np.ndarray:
        scored.append(audio.size)
        return await score_speech(audio)

    monkeypatch.setattr(vad, "score_speech", counted)
    monkeypatch.setattr(diarize, "score_speech", counted)
    response = await client.post(route, data=form(two_voices, **fields))
    body = await response.text()  # to the end: a stream's speakers come after its text
    assert response.status == 200, body
    assert '"speaker"' in body or '"speakers"' in body
    assert len(scored) == 1


async def test_known_speakers_name_the_voices_they_match(client, two_voices, jfk_audio) -> None:
    """A reference of the low-passed voice names the second speaker; the first, matched by
    no reference, is A."""
    bob = data_url(low_passed(jfk_audio[: 5 * SAMPLE_RATE]))
    body = await (
        await client.post(
            ROUTE,
            data=form(
                two_voices,
                response_format="diarized_json",
                **{"known_speaker_names[]": "Bob", "known_speaker_references[]": bob},
            ),
        )
    ).json()
    speakers = [item["speaker"] for item in body["segments"]]
    assert speakers[0] == "A" and speakers[-1] == "Bob" and set(speakers) == {"A", "Bob"}
    ann = data_url(jfk_audio[5 * SAMPLE_RATE :])
    body = await (
        await client.post(
            "/transcribe",
            data=form(
                two_voices,
                diarize="true",
                **{"known_speaker_names": ["Ann", "Bob"], "known_speaker_references": [ann, bob]},
            ),
        )
    ).json()
    assert body["speakers"] == ["Ann", "Bob"]
    assert body["segments"][0]["speaker"] == "Ann" and body["segments"][-1]["speaker"] == "Bob"


REFERENCE = "data:audio/wav;base64,"


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (
            {"known_speaker_names[]": ["Ann", "Bob"], "known_speaker_references[]": "REF"},
            "known_speaker_references",
            "one reference per name",
        ),
        (
            {"known_speaker_names[]": "Ann", "known_speaker_references[]": "https://x/a.wav"},
            "known_speaker_references",
            "must be a data URL of audio",
        ),
        (
            {"known_speaker_names[]": "Ann", "known_speaker_references[]": REFERENCE + "!!"},
            "known_speaker_references",
            "must be a data URL of audio",
        ),
        (
            {
                "known_speaker_names[]": "Ann",
                "known_speaker_references[]": REFERENCE
                + base64.b64encode(b"plain text, not audio " * 20).decode(),
            },
            "known_speaker_references",
            "not audio",
        ),
        (
            {
                "known_speaker_names[]": [f"P{i}" for i in range(5)],
                "known_speaker_references[]": ["REF"] * 5,
            },
            "known_speaker_names",
            "at most 4",
        ),
        (
            {"known_speaker_names[]": ["Ann", "Ann"], "known_speaker_references[]": ["REF"] * 2},
            "known_speaker_names",
            "must differ",
        ),
        (
            {"known_speaker_names[]": "", "known_speaker_references[]": "REF"},
            "known_speaker_names",
            "1 to 64 characters",
        ),
    ],
)
async def test_bad_known_speakers_are_refused(
    client, two_voices, jfk_audio, fields, param, message
) -> None:
    good = data_url(jfk_audio[: 3 * SAMPLE_RATE])
    fields = {
        name: [good if item == "REF" else item for item in value]
        if isinstance(value, list)
        else (good if value == "REF" else value)
        for name, value in fields.items()
    }
    response = await client.post(
        ROUTE, data=form(two_voices, response_format="diarized_json", **fields)
    )
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["param"] == param and message in error["message"], error


async def test_known_speakers_without_diarization_are_refused(
    client, two_voices, jfk_audio
) -> None:
    reference = data_url(jfk_audio[: 3 * SAMPLE_RATE])
    fields = {"known_speaker_names[]": "Ann", "known_speaker_references[]": reference}
    response = await client.post("/transcribe", data=form(two_voices, **fields))
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "known_speaker_names"


@pytest.mark.parametrize(
    ("route", "fields", "param", "message"),
    [
        ("/transcribe", {"diarize": "true", "max_speakers": "0"}, "max_speakers", "1 to 26"),
        ("/transcribe", {"diarize": "true", "min_speakers": "x"}, "min_speakers", "1 to 26"),
        (
            "/transcribe",
            {"diarize": "true", "min_speakers": "3", "max_speakers": "2"},
            "min_speakers",
            "more than max_speakers",
        ),
        (ROUTE, {"diarize": "true"}, "diarize", "srt or vtt"),
        (ROUTE, {"diarize": "true", "response_format": "verbose_json"}, "diarize", "srt or vtt"),
        (
            "/v1/audio/translations",
            {"response_format": "diarized_json"},
            "response_format",
            "transcription format",
        ),
    ],
)
async def test_bad_diarization_requests_are_refused(
    client, two_voices, route, fields, param, message
) -> None:
    response = await client.post(route, data=form(two_voices, **fields))
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["param"] == param and message in error["message"]
