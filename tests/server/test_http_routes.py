"""Every HTTP route against a scripted backend: the answer of each response format, each
validation error with its status, code and message, access control, and admission. Uploads
are decoded by the real ffmpeg and read by the real voice detector; only the model is scripted."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
import srt
import webvtt
from aiohttp import ClientResponse, FormData, WSServerHandshakeError

from gateway.core.contract import AsrBusy, AsrFailed, AsrUnavailable, Priority, TranscribeOptions
from gateway.core.transcript import Segment
from gateway.modes.audio import SAMPLE_RATE
from testsupport.clips import DATA_DIR
from testsupport.scripted_backend import ScriptedBackend, hear

JFK = DATA_DIR / "jfk.flac"
UPLOAD_ROUTES = ["/transcribe", "/upload", "/v1/audio/transcriptions"]
KEY = "hk-route-test-1"
APP_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example"


# --- helpers -------------------------------------------------------------------------------


def upload(path: Path | None = JFK, data: bytes | None = None, **fields: str | list[str]):
    """A multipart form: the file (`path`, or `data`) and `fields` (a list repeats one)."""
    form = FormData(default_to_multipart=True)
    if path is not None or data is not None:
        content = data if data is not None else path.read_bytes()
        form.add_field("file", content, filename=path.name if path else "upload.bin")
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            form.add_field(name, item)
    return form


async def api_error(response: ClientResponse, status: int, code: str) -> str:
    """The message of an error answer, after checking its status, code and OpenAI shape."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "code", "request_id"}, error
    assert error["code"] == code, error
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert error["request_id"] == response.headers["X-Request-Id"]
    return error["message"]


def events(body: str) -> list[dict]:
    """The JSON events of a server-sent event stream."""
    chunks = [chunk for chunk in body.split("\n\n") if chunk]
    assert all(chunk.startswith("data: ") for chunk in chunks), body
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks]


def wav(tmp_path: Path, audio: np.ndarray, name: str = "audio.wav") -> Path:
    path = tmp_path / name
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path


def clock(seconds: float, marker: str) -> str:
    """`HH:MM:SS<marker>mmm`, written out here rather than taken from the gateway."""
    millis = round(seconds * 1000)
    return (
        f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}"
        f"{marker}{millis % 1000:03d}"
    )


@pytest.fixture
def jfk_heard(jfk_audio: np.ndarray) -> tuple[Segment, ...]:
    """What the scripted backend hears in jfk.flac: the gateway sends it as one window."""
    segments = hear(jfk_audio, TranscribeOptions(word_timestamps=True))
    assert len(segments) >= 3  # pauses between the phrases: several segments
    return segments


def text_of(segments: tuple[Segment, ...]) -> str:
    return "".join(segment.text for segment in segments).strip()


# --- success, per route and response format ------------------------------------------------


async def test_openai_json_is_the_text_the_model_heard(client, backend, jfk_heard) -> None:
    reply = await client.post("/v1/audio/transcriptions", data=upload(model="whisper-1"))
    assert reply.status == 200 and reply.content_type == "application/json"
    assert await reply.json() == {
        "text": text_of(jfk_heard),
        "usage": {"type": "duration", "seconds": 11},
    }
    [call] = backend.calls
    assert call.priority == Priority.FILE and call.seconds == pytest.approx(11.0, abs=0.01)
    assert call.options == TranscribeOptions()


async def test_openai_text(client, jfk_heard) -> None:
    reply = await client.post("/v1/audio/transcriptions", data=upload(response_format="text"))
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await reply.text() == text_of(jfk_heard) + "\n"


async def test_openai_srt_has_a_cue_per_segment(client, jfk_heard) -> None:
    reply = await client.post("/v1/audio/transcriptions", data=upload(response_format="srt"))
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    body = await reply.text()
    assert body == "".join(
        f"{n}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text.strip()}\n\n"
        for n, s in enumerate(jfk_heard, start=1)
    )
    cues = list(srt.parse(body))
    assert [cue.content for cue in cues] == [s.text.strip() for s in jfk_heard]
    assert [cue.start.total_seconds() for cue in cues] == [s.start for s in jfk_heard]


async def test_openai_vtt_has_a_cue_per_segment(client, jfk_heard) -> None:
    reply = await client.post("/v1/audio/transcriptions", data=upload(response_format="vtt"))
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/vtt; charset=utf-8"
    body = await reply.text()
    assert body.startswith("WEBVTT\n\n")
    assert body == "WEBVTT\n\n" + "".join(
        f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text.strip()}\n\n" for s in jfk_heard
    )
    captions = webvtt.from_buffer(io.StringIO(body))
    assert [caption.text for caption in captions] == [s.text.strip() for s in jfk_heard]


async def test_openai_verbose_json_with_segments(client, backend, jfk_heard) -> None:
    form = upload(response_format="verbose_json", language="en", temperature="0.4")
    reply = await client.post("/v1/audio/transcriptions", data=form)
    assert reply.status == 200 and reply.content_type == "application/json"
    body = await reply.json()
    assert set(body) == {"task", "language", "duration", "text", "segments", "usage"}
    assert body["usage"] == {"type": "duration", "seconds": 11}
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == 11.0 and body["text"] == text_of(jfk_heard)
    assert [segment["id"] for segment in body["segments"]] == list(range(len(jfk_heard)))
    for got, heard in zip(body["segments"], jfk_heard, strict=True):
        assert got == {
            "id": got["id"],
            "seek": 0,
            "start": heard.start,
            "end": heard.end,
            "text": heard.text,
            "tokens": list(heard.tokens),
            "temperature": 0.4,
            "avg_logprob": heard.avg_logprob,
            "compression_ratio": heard.compression_ratio,
            "no_speech_prob": heard.no_speech_prob,
        }
    assert backend.calls[0].options == TranscribeOptions(language="en", temperature=0.4)


@pytest.mark.parametrize(
    ("granularities", "keys"),
    [
        pytest.param(["word"], {"words"}, id="word"),
        pytest.param(["word", "segment"], {"words", "segments"}, id="word-segment"),
    ],
)
async def test_openai_verbose_json_with_words(
    client, backend, jfk_heard, granularities, keys
) -> None:
    form = upload(response_format="verbose_json", **{"timestamp_granularities[]": granularities})
    body = await (await client.post("/v1/audio/transcriptions", data=form)).json()
    assert set(body) == {"task", "language", "duration", "text", "usage"} | keys
    assert body["words"] == [
        {"word": word.word.strip(), "start": word.start, "end": word.end, "probability": 0.9}
        for segment in jfk_heard
        for word in segment.words
    ]
    assert backend.calls[0].options.word_timestamps is True


async def test_granularities_are_read_without_brackets_too(client, backend) -> None:
    form = upload(response_format="verbose_json", timestamp_granularities="word")
    body = await (await client.post("/v1/audio/transcriptions", data=form)).json()
    assert "words" in body and "segments" not in body


async def test_openai_fields_reach_the_model_and_unknown_ones_are_ignored(client, backend) -> None:
    form = upload(
        model="whisper-1",
        language="de",
        prompt="Ich bin ein Berliner",
        temperature="0.2",
        user="someone",
        frobnicate="yes",
    )
    reply = await client.post("/v1/audio/transcriptions", data=form)
    assert reply.status == 200
    [call] = backend.calls
    assert call.options == TranscribeOptions(
        language="de", prompt="Ich bin ein Berliner", temperature=0.2
    )


@pytest.mark.parametrize("route", ["/transcribe", "/upload"])
async def test_native_json(client, backend, jfk_heard, route) -> None:
    reply = await client.post(route, data=upload())
    assert reply.status == 200 and reply.content_type == "application/json"
    body = await reply.json()
    assert set(body) == {"text", "language", "duration", "segments"}
    assert body["text"] == text_of(jfk_heard)
    assert body["language"] == "en" and body["duration"] == 11.0
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (index, s.start, s.end, s.text) for index, s in enumerate(jfk_heard)
    ]
    assert all("words" not in segment for segment in body["segments"])
    assert [call.priority for call in backend.calls] == [Priority.FILE]


async def test_native_json_with_word_timestamps(client, backend, jfk_heard) -> None:
    reply = await client.post("/transcribe", data=upload(word_timestamps="true"))
    body = await reply.json()
    assert [segment["words"] for segment in body["segments"]] == [
        [
            {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
            for w in segment.words
        ]
        for segment in jfk_heard
    ]
    assert backend.calls[0].options.word_timestamps is True


async def test_a_raw_body_with_options_in_the_query(client, backend, jfk_heard) -> None:
    reply = await client.post(
        "/transcribe?language=fr&prompt=Bonjour&temperature=0.5",
        data=JFK.read_bytes(),
        headers={"Content-Type": "audio/flac"},
    )
    assert reply.status == 200
    assert (await reply.json())["text"] == text_of(jfk_heard)
    assert backend.calls[0].options == TranscribeOptions(
        language="fr", prompt="Bonjour", temperature=0.5
    )


async def test_one_channel_of_a_stereo_file(client, backend, tmp_path, jfk_audio) -> None:
    """Left: jfk; right: silence. The downmix and channel 0 hear jfk, channel 1 nothing."""
    stereo = np.stack([jfk_audio, np.zeros_like(jfk_audio)], axis=1)
    path = tmp_path / "left-only.wav"
    soundfile.write(path, stereo, SAMPLE_RATE, subtype="PCM_16")
    texts = {}
    for channel in ("", "0", "1"):
        reply = await client.post("/transcribe", data=upload(path, channel=channel))
        assert reply.status == 200
        texts[channel] = (await reply.json())["text"]
    assert texts["0"].startswith("w1 w2") and texts[""].startswith("w1 w2")
    assert texts["1"] == ""
    assert len(backend.calls) == 2  # silence is never sent to the model


async def test_silence_is_not_sent_to_the_model(client, backend, tmp_path) -> None:
    path = wav(tmp_path, np.zeros(3 * SAMPLE_RATE, np.float32))
    reply = await client.post(
        "/v1/audio/transcriptions", data=upload(path, response_format="verbose_json")
    )
    body = await reply.json()
    assert reply.status == 200
    assert (body["text"], body["segments"], body["duration"]) == ("", [], 3.0)
    assert backend.calls == []


async def test_a_long_file_is_read_window_by_window_in_file_order(
    client, backend, tmp_path, jfk_audio
) -> None:
    """jfk three times (33 s) is more than a window: the windows' words come in file order
    and their times are the file's."""
    path = wav(tmp_path, np.concatenate([jfk_audio] * 3))
    reply = await client.post("/transcribe", data=upload(path, word_timestamps="true"))
    body = await reply.json()
    assert len(backend.calls) >= 2
    assert all(call.seconds <= 27.0 and call.priority == Priority.FILE for call in backend.calls)
    assert body["duration"] == 33.0
    assert len(body["text"].split()) == sum(len(call.text.split()) for call in backend.calls)
    starts = [word["start"] for segment in body["segments"] for word in segment["words"]]
    assert starts == sorted(starts) and starts[-1] > 22.0
    assert body["segments"][-1]["end"] <= 33.0


async def test_a_client_that_hangs_up_stops_the_work(make_client, backend, tmp_path, jfk_audio):
    """The upload's handler is cancelled with its connection: the window at the model is
    cancelled and no other window of the file is sent."""
    client = await make_client(file_windows_in_flight=1)
    path = wav(tmp_path, np.concatenate([jfk_audio] * 5))  # 55 s: two windows or more
    backend.hold()
    request = asyncio.ensure_future(client.post("/transcribe", data=upload(path)))
    await backend.until_waiting(1)
    request.cancel()  # the client goes away
    async with asyncio.timeout(5):
        while backend.waiting:
            await asyncio.sleep(0.01)
    backend.release()
    await asyncio.sleep(0.3)
    assert len(backend.calls) == 1


@pytest.mark.parametrize(("with_a_stream", "expected"), [(False, 3), (True, 1)])
async def test_fewer_windows_of_a_file_at_the_model_while_a_stream_runs(
    make_client, backend, tmp_path, jfk_audio, with_a_stream, expected
) -> None:
    """An upload keeps `file_windows_in_flight` windows at the model, and file work all
    together `file_windows_beside_streams` while a live stream is open (whose steps would
    wait behind the file's batch)."""
    client = await make_client(
        file_windows_in_flight=3,
        file_windows_beside_streams=1,
        max_upload_mb=8,
        max_audio_seconds=150,
    )
    path = wav(tmp_path, np.concatenate([jfk_audio] * 12))  # 132 s: five windows or more
    stream = await client.ws_connect("/stream-audio") if with_a_stream else None
    backend.hold()
    request = asyncio.ensure_future(client.post("/transcribe", data=upload(path)))
    await backend.until_waiting(expected)
    await asyncio.sleep(0.3)  # time for any window over the limit to be sent
    assert backend.waiting == expected
    backend.release()
    reply = await request
    assert reply.status == 200
    assert len(backend.calls) >= 5
    if stream is not None:
        await stream.close()


async def test_file_work_of_all_uploads_together_is_bounded_while_a_stream_runs(
    make_client, backend, tmp_path, jfk_audio
) -> None:
    """Two uploads of five windows or more, each allowed 3 at the model: with a live stream
    open, 2 of their windows reach it, not 2 per upload."""
    client = await make_client(
        file_windows_in_flight=3,
        file_windows_beside_streams=2,
        max_upload_mb=8,
        max_audio_seconds=150,
    )
    path = wav(tmp_path, np.concatenate([jfk_audio] * 12))
    stream = await client.ws_connect("/stream-audio")
    backend.hold()
    requests = [
        asyncio.ensure_future(client.post("/transcribe", data=upload(path))) for _ in range(2)
    ]
    await backend.until_waiting(2)
    await asyncio.sleep(0.3)
    assert backend.waiting == 2
    await stream.close()
    backend.release()
    assert [reply.status for reply in await asyncio.gather(*requests)] == [200, 200]


async def test_a_client_whose_uploads_keep_being_refused_is_told_to_wait(
    make_client, backend
) -> None:
    """After `max_refused_uploads_per_client` refusals in the window, the client's next upload
    gets 429 with Retry-After before its body is read; another client's upload goes on."""
    other = "hk-route-test-2"
    client = await make_client(
        api_keys=f"{KEY},{other}", max_refused_uploads_per_client=2, refused_uploads_window_s=60
    )
    mine, theirs = ({"Authorization": f"Bearer {key}"} for key in (KEY, other))
    for _ in range(2):
        reply = await client.post("/transcribe", data=upload(data=b"not audio"), headers=mine)
        await api_error(reply, 415, "unsupported_file_type")
    reply = await client.post("/v1/audio/transcriptions", data=upload(), headers=mine)
    message = await api_error(reply, 429, "too_many_refused_uploads")
    assert message.startswith("2 uploads from this client were refused in the last 60 s")
    assert 58 <= int(reply.headers["Retry-After"]) <= 60
    assert backend.calls == []  # JFK was never decoded, let alone sent to the model
    reply = await client.post("/v1/audio/transcriptions", data=upload(), headers=theirs)
    assert reply.status == 200 and (await reply.json())["text"]


async def test_native_progress_events(client, jfk_heard) -> None:
    reply = await client.post("/transcribe", data=upload(stream="true"))
    assert reply.status == 200 and reply.content_type == "text/event-stream"
    sent = events(await reply.text())
    assert sent[:-1] == [
        {"type": "progress", "processed": 11.0, "duration": 11.0, "delta": text_of(jfk_heard)},
        {"type": "progress", "processed": 11.0, "duration": 11.0, "delta": ""},
    ]
    assert sent[-1]["type"] == "done"
    assert sent[-1]["transcript"]["text"] == text_of(jfk_heard)
    assert len(sent[-1]["transcript"]["segments"]) == len(jfk_heard)


async def test_openai_stream_events(client, jfk_heard) -> None:
    reply = await client.post("/v1/audio/transcriptions", data=upload(stream="yes"))
    assert reply.status == 200 and reply.content_type == "text/event-stream"
    assert events(await reply.text()) == [
        {"type": "transcript.text.delta", "delta": text_of(jfk_heard)},
        {
            "type": "transcript.text.done",
            "text": text_of(jfk_heard),
            "usage": {"type": "duration", "seconds": 11},
        },
    ]


# --- validation errors ---------------------------------------------------------------------


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
async def test_a_form_without_a_file(client, backend, route) -> None:
    reply = await client.post(route, data=upload(None, model="whisper-1"))
    message = await api_error(reply, 400, "missing_file")
    assert message == "the multipart form has no 'file' field"


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
async def test_an_empty_file(client, route) -> None:
    reply = await client.post(route, data=upload(data=b""))
    assert await api_error(reply, 400, "invalid_audio") == "the file is empty"


async def test_an_empty_raw_body(client) -> None:
    reply = await client.post("/transcribe", data=b"")
    assert await api_error(reply, 400, "invalid_audio") == "the file is empty"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(
            {"response_format": "xml"},
            "response_format must be one of json, text, srt, vtt, verbose_json, diarized_json, "
            "got 'xml'",
            id="response_format",
        ),
        pytest.param(
            {"temperature": "hot"},
            "temperature must be a number between 0 and 1, got 'hot'",
            id="temperature-word",
        ),
        pytest.param(
            {"temperature": "1.5"},
            "temperature must be a number between 0 and 1, got '1.5'",
            id="temperature-high",
        ),
        pytest.param(
            {"temperature": "-0.1"},
            "temperature must be a number between 0 and 1, got '-0.1'",
            id="temperature-negative",
        ),
        pytest.param(
            {"temperature": "nan"},
            "temperature must be a number between 0 and 1, got 'nan'",
            id="temperature-nan",
        ),
        pytest.param(
            {"timestamp_granularities[]": ["segment", "char"]},
            "timestamp_granularities must be among segment, word, got char",
            id="granularity",
        ),
        pytest.param(
            {"stream": "maybe"}, "stream must be true or false, got 'maybe'", id="stream-flag"
        ),
    ],
)
async def test_openai_bad_options(client, backend, fields, message) -> None:
    reply = await client.post("/v1/audio/transcriptions", data=upload(**fields))
    assert await api_error(reply, 400, "invalid_value") == message
    assert backend.calls == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("channel=left", "channel must be a channel number from 0, got 'left'"),
        ("channel=-1", "channel must be a channel number from 0, got '-1'"),
        ("channel=%C2%B2", "channel must be a channel number from 0, got '²'"),
        ("word_timestamps=2", "word_timestamps must be true or false, got '2'"),
        ("temperature=2", "temperature must be a number between 0 and 1, got '2'"),
    ],
)
async def test_native_bad_options(client, backend, query, message) -> None:
    reply = await client.post(f"/transcribe?{query}", data=JFK.read_bytes())
    assert await api_error(reply, 400, "invalid_value") == message
    assert backend.calls == []


async def test_a_language_the_model_refuses(make_client) -> None:
    backend = ScriptedBackend(languages={"en"})
    client = await make_client(backend)
    reply = await client.post("/v1/audio/transcriptions", data=upload(language="xx"))
    message = await api_error(reply, 400, "invalid_request")
    assert message == "the model refused the request: unknown language 'xx'"
    reply = await client.post("/v1/audio/transcriptions", data=upload(language="en"))
    assert reply.status == 200


async def test_a_form_field_over_64_kib(client, backend) -> None:
    reply = await client.post("/v1/audio/transcriptions", data=upload(prompt="x" * 70_000))
    message = await api_error(reply, 400, "field_too_large")
    assert message == "form field 'prompt' is longer than 65536 bytes"
    assert backend.calls == []


async def test_a_file_over_the_upload_limit(make_client, backend, tmp_path, jfk_audio) -> None:
    client = await make_client(max_upload_mb=0.25)
    expected = "the upload is larger than the limit of 0.25 MB"
    for route in UPLOAD_ROUTES:
        reply = await client.post(route, data=upload(data=b"\x00" * 300_000))
        assert await api_error(reply, 413, "file_too_large") == expected
    # a raw body: declared too large (refused before it is read), or cut off at the limit
    for size in (300_000, 500_000):
        reply = await client.post("/transcribe", data=b"\x00" * size)
        assert await api_error(reply, 413, "file_too_large") == expected

    async def chunks():
        for _ in range(10):
            yield b"\x00" * 32_768

    reply = await client.post("/transcribe", data=chunks())
    assert "Content-Length" not in reply.request_info.headers
    assert await api_error(reply, 413, "file_too_large") == expected
    assert backend.calls == []
    # under the limit: transcribed
    small = wav(tmp_path, jfk_audio[: 2 * SAMPLE_RATE])
    assert small.stat().st_size < 0.25 * 1024 * 1024
    assert (await client.post("/transcribe", data=upload(small))).status == 200
    assert len(backend.calls) == 1


async def test_audio_over_the_duration_limit(make_client, backend) -> None:
    client = await make_client(max_audio_seconds=5)
    reply = await client.post("/v1/audio/transcriptions", data=upload())
    message = await api_error(reply, 413, "audio_too_long")
    assert message == "the audio is longer than the limit of 5 s (the file declares 11 s)"
    assert backend.calls == []


NOT_AUDIO = {
    "pdf": (
        b"%PDF-1.7\n" + b"\x00" * 200,
        415,
        "unsupported_file_type",
        "the file is a PDF document, not audio",
    ),
    "png": (
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 200,
        415,
        "unsupported_file_type",
        "the file is a PNG image, not audio",
    ),
    "text": (
        b"hello, this is a text file\n" * 20,
        415,
        "unsupported_file_type",
        "the file is text, not audio",
    ),
    "noise bytes": (
        bytes(range(256)) * 8,
        400,
        "invalid_audio",
        "ffmpeg could not decode the audio: ",
    ),
}


@pytest.mark.parametrize("case", list(NOT_AUDIO))
@pytest.mark.parametrize("route", ["/transcribe", "/v1/audio/transcriptions"])
async def test_files_that_are_not_audio(client, backend, route, case) -> None:
    content, status, code, message = NOT_AUDIO[case]
    reply = await client.post(route, data=upload(data=content))
    assert (await api_error(reply, status, code)).startswith(message)
    assert backend.calls == []


async def test_a_truncated_file(client, backend) -> None:
    """A FLAC cut inside its header holds nothing to decode."""
    reply = await client.post("/transcribe", data=upload(data=JFK.read_bytes()[:30]))
    message = await api_error(reply, 400, "invalid_audio")
    # ffmpeg's cause once, without its line naming the input (a server path) or restating it
    assert message == (
        "ffmpeg could not decode the audio: "
        "Error opening input: Invalid data found when processing input"
    )
    assert backend.calls == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/transcribe"),
        ("GET", "/v1/audio/transcriptions"),
        ("POST", "/healthz"),
        ("PUT", "/upload"),
        ("DELETE", "/readyz"),
    ],
)
async def test_a_wrong_method(client, method, path) -> None:
    reply = await client.request(method, path)
    assert await api_error(reply, 405, "method_not_allowed") == "405: Method Not Allowed"


async def test_a_wrong_method_says_which_are_allowed(client) -> None:
    reply = await client.get("/transcribe")
    assert reply.status == 405 and reply.headers.get("Allow") == "POST"


@pytest.mark.parametrize("path", ["/nope", "/v1/audio/speech", "/v1/chat/completions"])
async def test_an_unknown_route(client, path) -> None:
    assert await api_error(await client.get(path), 404, "not_found") == "404: Not Found"


async def test_a_missing_static_file_is_a_json_404(client) -> None:
    message = await api_error(await client.get("/static/nope.js"), 404, "not_found")
    assert message == "no static file 'nope.js'"
    assert (await client.get("/static/app.js")).headers["Content-Type"].endswith("/javascript")


async def test_a_channel_the_file_does_not_have(client, backend) -> None:
    reply = await client.post("/transcribe?channel=5", data=JFK.read_bytes())  # stereo
    message = await api_error(reply, 400, "invalid_value")
    assert message == "the file has no channel 5 (channels are numbered from 0)"
    assert backend.calls == []


# --- the backend's errors ------------------------------------------------------------------


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
async def test_model_unavailable_is_503_with_retry_after(client, backend, route) -> None:
    backend.failure = AsrUnavailable("speech model unavailable: replica down")
    reply = await client.post(route, data=upload())
    message = await api_error(reply, 503, "model_unavailable")
    assert message == "speech model unavailable: replica down"
    assert reply.headers["Retry-After"] == "5"
    backend.failure = None
    assert (await client.post(route, data=upload())).status == 200


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
async def test_a_model_too_busy_to_queue_the_window_is_server_busy(client, backend, route) -> None:
    backend.failure = AsrBusy("speech model busy: Request timeout expired")
    reply = await client.post(route, data=upload())
    message = await api_error(reply, 503, "server_busy")
    assert message == "speech model busy: Request timeout expired"
    assert reply.headers["Retry-After"] == "5"


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
async def test_a_model_fault_is_a_500_that_keeps_its_internals_in_the_log(
    client, backend, route, caplog
) -> None:
    backend.failure = AsrFailed("speech model failed (StatusCode.INTERNAL): CUDA error: illegal")
    reply = await client.post(route, data=upload())
    message = await api_error(reply, 500, "model_error")
    assert message == (
        "the speech model failed on this audio; the request id finds it in the gateway's log"
    )
    assert reply.headers["Retry-After"] == "5"
    assert "CUDA error: illegal" in caplog.text


@pytest.mark.parametrize("route", ["/transcribe", "/v1/audio/transcriptions"])
async def test_a_failure_after_the_events_began_is_the_last_event(client, backend, route) -> None:
    backend.failure = AsrUnavailable("speech model unavailable: replica down")
    reply = await client.post(route, data=upload(stream="true"))
    assert reply.status == 200 and reply.content_type == "text/event-stream"
    [event] = events(await reply.text())
    assert event["type"] == "error"
    error = event["error"]
    assert error["code"] == "model_unavailable" and error["type"] == "server_error"
    assert error["message"] == "speech model unavailable: replica down"
    assert error["request_id"] == reply.headers["X-Request-Id"]


# --- health and the live page --------------------------------------------------------------


async def test_healthz_says_nothing_about_the_model(client, backend) -> None:
    backend.ready = False
    reply = await client.get("/healthz")
    assert reply.status == 200 and await reply.json() == {"status": "ok"}


async def test_readyz_ready(client) -> None:
    reply = await client.get("/readyz")
    assert reply.status == 200
    assert await reply.json() == {
        "status": "ready",
        "model": "scripted",
        "backend": "scripted, in process",
    }


async def test_readyz_not_ready_is_503_with_retry_after(client, backend) -> None:
    backend.ready = False
    reply = await client.get("/readyz")
    message = await api_error(reply, 503, "model_unavailable")
    assert message == "model 'scripted' is not ready (scripted, in process)"
    assert reply.headers["Retry-After"] == "5"


async def test_readyz_shows_the_backend_only_to_a_caller_with_a_key(make_client, backend) -> None:
    client = await make_client(api_keys=KEY)
    assert await (await client.get("/readyz")).json() == {"status": "ready"}
    wrong = await client.get("/readyz", headers={"Authorization": "Bearer wrong"})
    assert await wrong.json() == {"status": "ready"}
    keyed = await client.get("/readyz", headers={"Authorization": f"Bearer {KEY}"})
    assert (await keyed.json())["backend"] == "scripted, in process"
    backend.ready = False
    message = await api_error(await client.get("/readyz"), 503, "model_unavailable")
    assert message == "the speech model is not ready"


@pytest.mark.parametrize(
    ("script", "speaks"),
    [("app.js", "setupLive"), ("live.js", "/stream-audio"), ("files.js", "/transcribe")],
)
async def test_the_page_and_its_scripts(client, script, speaks) -> None:
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "<title>hermes" in await page.text()
    served = await client.get(f"/static/{script}")
    assert served.status == 200 and speaks in await served.text()


# --- request ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        pytest.param("trace-1", "trace-1", id="kept"),
        pytest.param("bad id <x>", "badidx", id="cleaned"),
        pytest.param("z" * 200, "z" * 128, id="cut"),
    ],
)
async def test_request_ids_are_echoed_cleaned_and_in_error_bodies(client, sent, answered) -> None:
    reply = await client.get("/nope", headers={"X-Request-Id": sent})
    assert reply.headers["X-Request-Id"] == answered
    assert (await reply.json())["error"]["request_id"] == answered


# --- API keys ------------------------------------------------------------------------------


NO_KEY = ("no API key: send it as Authorization: Bearer <key>", 'Bearer realm="hermes"')
WRONG_KEY = ("invalid API key", 'Bearer realm="hermes", error="invalid_token"')
BAD_CREDENTIALS = {
    "none": ({}, "", NO_KEY),
    "a wrong key": ({"Authorization": "Bearer wrong"}, "", WRONG_KEY),
    "the key cut short": ({"Authorization": f"Bearer {KEY[:-1]}"}, "", WRONG_KEY),
    "another scheme": ({"Authorization": f"Basic {KEY}"}, "", WRONG_KEY),
    "the key in the query": ({}, f"?token={KEY}", NO_KEY),  # for WebSockets only
}


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_upload_routes_need_a_valid_key(make_client, backend, route, case) -> None:
    headers, query, (message, challenge) = BAD_CREDENTIALS[case]
    client = await make_client(api_keys=KEY)
    reply = await client.post(route + query, data=upload(), headers=headers)
    assert await api_error(reply, 401, "invalid_api_key") == message
    assert reply.headers["WWW-Authenticate"] == challenge
    assert backend.calls == []


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
async def test_a_query_token_counts_only_on_the_websocket_route(
    make_client, backend, route
) -> None:
    """An `Upgrade: websocket` header does not make `?token=` a key on another route."""
    client = await make_client(api_keys=KEY)
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
    reply = await client.post(f"{route}?token={KEY}", data=upload(), headers=headers)
    assert await api_error(reply, 401, "invalid_api_key") == NO_KEY[0]
    assert backend.calls == []


async def test_the_right_key_is_let_in(make_client, backend) -> None:
    client = await make_client(api_keys=f"other-key,{KEY}")
    reply = await client.post(
        "/v1/audio/transcriptions", data=upload(), headers={"Authorization": f"Bearer {KEY}"}
    )
    assert reply.status == 200 and len(backend.calls) == 1


async def test_probes_and_the_page_need_no_key_but_unknown_routes_do(make_client) -> None:
    client = await make_client(api_keys=KEY)
    for path in ("/healthz", "/readyz", "/", "/static/app.js"):
        assert (await client.get(path)).status == 200, path
    await api_error(await client.get("/nope"), 401, "invalid_api_key")


# --- CORS ----------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def cors_headers(reply: ClientResponse) -> dict[str, str]:
    return {k: v for k, v in reply.headers.items() if k.lower().startswith("access-control-")}


async def test_no_cors_unless_configured(client) -> None:
    reply = await client.options("/v1/audio/transcriptions", headers=preflight(APP_ORIGIN))
    await api_error(reply, 405, "method_not_allowed")
    assert cors_headers(reply) == {}
    reply = await client.get("/healthz", headers={"Origin": APP_ORIGIN})
    assert reply.status == 200 and cors_headers(reply) == {}


async def test_cors_preflight_from_a_listed_origin_needs_no_key(make_client) -> None:
    client = await make_client(cors_origins=APP_ORIGIN, api_keys=KEY)
    reply = await client.options("/v1/audio/transcriptions", headers=preflight(APP_ORIGIN))
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert reply.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert reply.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert reply.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in reply.headers.getall("Vary")
    # the answers to that origin say so, errors included, and expose the request id
    refused = await client.post("/transcribe", data=b"x", headers={"Origin": APP_ORIGIN})
    await api_error(refused, 401, "invalid_api_key")
    assert refused.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert refused.headers["Access-Control-Expose-Headers"] == "X-Request-Id, Retry-After"


async def test_cors_preflight_from_another_origin_is_403(make_client) -> None:
    client = await make_client(cors_origins=APP_ORIGIN)
    reply = await client.options("/transcribe", headers=preflight(EVIL_ORIGIN))
    message = await api_error(reply, 403, "origin_not_allowed")
    assert message == f"cross-origin requests from {EVIL_ORIGIN!r} are not allowed (cors_origins)"
    assert "Access-Control-Allow-Origin" not in reply.headers


async def test_cors_for_any_origin(make_client) -> None:
    client = await make_client(cors_origins="*")
    reply = await client.options("/upload", headers=preflight(EVIL_ORIGIN))
    assert reply.status == 204 and reply.headers["Access-Control-Allow-Origin"] == "*"
    reply = await client.get("/healthz", headers={"Origin": EVIL_ORIGIN})
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


# --- the WebSocket's origin check, before the upgrade --------------------------------------


async def test_a_websocket_from_a_foreign_page_is_403(client) -> None:
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/stream-audio", headers={"Origin": EVIL_ORIGIN})
    assert refused.value.status == 403
    # the same refusal read as plain HTTP: its JSON says why
    reply = await client.get(
        "/stream-audio",
        headers={
            "Origin": EVIL_ORIGIN,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    message = await api_error(reply, 403, "origin_not_allowed")
    assert message.startswith(
        f"WebSocket connections from pages at {EVIL_ORIGIN!r} are not allowed"
    )


async def test_a_websocket_from_the_gateways_own_page_or_a_listed_one(make_client) -> None:
    client = await make_client(allowed_origins=APP_ORIGIN)
    own = f"http://{client.host}:{client.port}"
    for origin in (own, APP_ORIGIN):
        ws = await client.ws_connect("/stream-audio", headers={"Origin": origin})
        await ws.send_json({"type": "stop"})
        assert await ws.receive_json(timeout=5) == {"type": "done"}
        await ws.close()


# --- admission -----------------------------------------------------------------------------


async def test_uploads_beyond_the_waiting_room_get_503_with_retry_after(
    make_client, backend
) -> None:
    client = await make_client(max_uploads_running=1, max_uploads_waiting=0)
    backend.hold()
    first = asyncio.create_task(client.post("/transcribe", data=upload()))
    await backend.until_waiting(1)
    refused = await client.post("/v1/audio/transcriptions", data=upload())
    message = await api_error(refused, 503, "server_busy")
    assert message == "the server is busy: 1 upload is being transcribed or waiting; retry later"
    assert refused.headers["Retry-After"] == "5"
    backend.release()
    assert (await first).status == 200
    assert (await client.post("/upload", data=upload())).status == 200
    assert len(backend.calls) == 2


async def test_a_waiting_upload_runs_when_the_one_before_is_done(make_client, backend) -> None:
    client = await make_client(max_uploads_running=1, max_uploads_waiting=1)
    backend.hold()
    first = asyncio.create_task(client.post("/transcribe", data=upload()))
    await backend.until_waiting(1)
    second = asyncio.create_task(client.post("/transcribe", data=upload()))
    await asyncio.sleep(0.3)
    assert len(backend.calls) == 1  # the second waits for its turn, not at the model
    backend.release()
    replies = await asyncio.gather(first, second)
    assert [reply.status for reply in replies] == [200, 200]
    assert len(backend.calls) == 2


# --- bounded forms and slow bodies ---------------------------------------------------------


async def test_a_form_of_too_many_parts(client, backend) -> None:
    form = upload(**{f"field{i}": "x" for i in range(70)})
    message = await api_error(await client.post("/transcribe", data=form), 400, "too_many_fields")
    assert message == "the form has more than 64 parts"
    assert backend.calls == []


async def test_form_fields_over_256_kib_together(client, backend) -> None:
    form = upload(**{f"field{i}": "x" * 60_000 for i in range(5)})
    reply = await client.post("/transcribe", data=form)
    message = await api_error(reply, 413, "fields_too_large")
    assert message == "the form's fields add up to more than 262144 bytes"
    assert backend.calls == []


async def trickle(first: bytes, go_on: asyncio.Event, rest: bytes):
    """A request body that sends `first`, then waits for `go_on` before the rest."""
    yield first
    await go_on.wait()
    yield rest


async def test_a_body_that_does_not_arrive_in_time_is_408(make_client, backend) -> None:
    client = await make_client(upload_read_timeout_s=0.5)
    stalled = asyncio.Event()
    body = JFK.read_bytes()
    reply = await client.post("/transcribe", data=trickle(body[:1000], stalled, body[1000:]))
    message = await api_error(reply, 408, "upload_timeout")
    assert message == "the upload did not arrive within 0.5 s"
    assert backend.calls == []


async def test_a_slow_body_does_not_hold_the_running_slot(make_client, backend) -> None:
    """One upload running at a time: a client still sending its body waits for nothing and
    keeps no one waiting; its turn comes once the body is in."""
    client = await make_client(max_uploads_running=1, max_uploads_waiting=1)
    go_on = asyncio.Event()
    body = JFK.read_bytes()
    slow = asyncio.create_task(
        client.post("/transcribe", data=trickle(body[:1000], go_on, body[1000:]))
    )
    await asyncio.sleep(0.2)
    async with asyncio.timeout(5):  # with the slot taken before the body: no answer at all
        honest = await client.post("/transcribe", data=upload())
    assert honest.status == 200 and len(backend.calls) == 1
    go_on.set()
    assert (await slow).status == 200 and len(backend.calls) == 2


OTHER_KEY = f"{KEY}-other"
Post = Callable[[str], Awaitable[ClientResponse]]


async def one_upload_held(
    make_client, backend, tmp_path: Path, jfk_audio: np.ndarray, budget_mb: int
) -> tuple[Post, asyncio.Task[ClientResponse]]:
    """Two API keys, a 30 s length limit (31 s, 1.9 MB, decoded at most) and `budget_mb` of
    decoded audio: KEY's 22 s upload (1.3 MB decoded) waiting at the model. Returns how to
    post the same upload with a key, and the first upload's answer to come."""
    client = await make_client(
        max_decoded_audio_mb=budget_mb, max_audio_seconds=30, api_keys=f"{KEY},{OTHER_KEY}"
    )
    path = wav(tmp_path, np.concatenate([jfk_audio] * 2))

    def post(key: str) -> Awaitable[ClientResponse]:
        return client.post(
            "/transcribe", data=upload(path), headers={"Authorization": f"Bearer {key}"}
        )

    backend.hold()
    first = asyncio.ensure_future(post(KEY))
    await backend.until_waiting(1)
    return post, first


async def busy(reply: ClientResponse) -> str:
    """The message of a 503 `server_busy` that asks to retry in 5 s."""
    assert reply.headers["Retry-After"] == "5"
    return await api_error(reply, 503, "server_busy")


async def test_decoded_audio_of_all_uploads_together_is_bounded(
    make_client, backend, tmp_path, jfk_audio
) -> None:
    """A 2 MB budget: with one client's upload waiting at the model, another client's finds
    no room while it decodes and gets 503; once the first is done, the room is back."""
    post, first = await one_upload_held(make_client, backend, tmp_path, jfk_audio, 2)
    assert re.fullmatch(
        r"the server is busy: uploads hold \d MB of decoded audio of the 2 MB it holds at once; "
        "retry later",
        await busy(await post(OTHER_KEY)),
    )
    backend.release()
    assert (await first).status == 200
    assert (await post(OTHER_KEY)).status == 200


async def test_one_clients_uploads_hold_at_most_their_share_of_decoded_audio(
    make_client, backend, tmp_path, jfk_audio
) -> None:
    """A 3 MB budget, of which one client may hold 1.9 MB (one upload of the length limit,
    more than half of it): with a client's upload waiting at the model, its second finds no
    room in its share and gets 503, while another client's upload runs beside the first."""
    post, first = await one_upload_held(make_client, backend, tmp_path, jfk_audio, 3)
    assert re.fullmatch(
        r"the server is busy: this client's uploads hold \d MB of decoded audio, the most one "
        "client holds at once is 2 MB; retry when one is done",
        await busy(await post(KEY)),
    )
    beside = asyncio.ensure_future(post(OTHER_KEY))
    await backend.until_waiting(2)
    backend.release()
    assert (await first).status == 200 and (await beside).status == 200
    assert (await post(KEY)).status == 200


async def test_one_client_cannot_fill_the_waiting_room(make_client, backend) -> None:
    client = await make_client(max_uploads_per_client=1, max_uploads_waiting=8)
    backend.hold()
    first = asyncio.create_task(client.post("/transcribe", data=upload()))
    await backend.until_waiting(1)
    refused = await client.post("/transcribe", data=upload())
    message = await api_error(refused, 503, "server_busy")
    assert message == (
        "too many uploads from this client: the limit is 1 running or waiting; retry later"
    )
    assert refused.headers["Retry-After"] == "5"
    backend.release()
    assert (await first).status == 200
    assert (await client.post("/transcribe", data=upload())).status == 200  # its turn again
