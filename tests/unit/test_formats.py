"""OpenAI response formats, checked with independent parsers and the `openai` client itself."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import timedelta

import openai
import pytest
import srt
import webvtt
from aiohttp import web
from openai.types.audio import Transcription, TranscriptionVerbose
from pytest_aiohttp import AiohttpServer

from gateway.core.transcript import (
    Segment,
    TokenLogprob,
    Transcript,
    Word,
    strip_leading_space,
)
from gateway.server.formats import RESPONSE_FORMATS, language_name, render, timestamp

TEXT = " Hello world. Second line, said over an hour in."


def segment(start: float, end: float, text: str, words: list[Word]) -> Segment:
    return Segment(
        start=start,
        end=end,
        text=text,
        avg_logprob=-0.25,
        no_speech_prob=0.01,
        compression_ratio=1.2,
        temperature=0.0,
        tokens=(50364, 2425, 1002),
        words=tuple(words),
    )


TRANSCRIPT = Transcript(
    text=TEXT,
    language="en",
    duration=3728.00049,
    segments=(
        segment(
            0.0,
            2.5,
            " Hello world.",
            [Word(" Hello", 0.0, 0.6, 0.9), Word(" world.", 0.7, 2.5, 0.8)],
        ),
        segment(
            2.5,
            5.0004,
            " Second line,",
            [Word(" Second", 2.5, 3.1, 0.9), Word(" line,", 3.2, 5.0004, 0.7)],
        ),
        segment(
            3725.1234,
            3727.9996,
            " said over an hour in.",
            [
                Word(" said", 3725.1234, 3726.0, 0.9),
                Word(" over an hour in.", 3726.1, 3727.9996, 0.6),
            ],
        ),
    ),
)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "00:00:00,000"),
        (-0.3, "00:00:00,000"),
        (5.0004, "00:00:05,000"),
        (59.9996, "00:01:00,000"),
        (3725.1234, "01:02:05,123"),
        (360_000.25, "100:00:00,250"),
    ],
)
def test_timestamp(seconds: float, expected: str) -> None:
    assert timestamp(seconds, ",") == expected


def test_srt_parses_into_the_segments() -> None:
    body, content_type = render(TRANSCRIPT, "srt")
    assert content_type == "text/plain; charset=utf-8"
    cues = list(srt.parse(body))
    assert [cue.index for cue in cues] == [1, 2, 3]
    assert [cue.content for cue in cues] == [
        "Hello world.",
        "Second line,",
        "said over an hour in.",
    ]
    assert cues[1].start == timedelta(seconds=2.5) and cues[1].end == timedelta(seconds=5)
    assert cues[2].start == timedelta(hours=1, minutes=2, seconds=5, milliseconds=123)
    assert cues[2].end == timedelta(hours=1, minutes=2, seconds=8)
    assert body.startswith("1\n00:00:00,000 --> 00:00:02,500\nHello world.\n\n2\n")


def test_vtt_parses_into_the_segments() -> None:
    body, content_type = render(TRANSCRIPT, "vtt")
    assert content_type == "text/vtt; charset=utf-8"
    assert body.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello world.\n\n")
    captions = webvtt.from_buffer(io.StringIO(body)).captions
    assert [(c.start, c.end, c.text) for c in captions] == [
        ("00:00:00.000", "00:00:02.500", "Hello world."),
        ("00:00:02.500", "00:00:05.000", "Second line,"),
        ("01:02:05.123", "01:02:08.000", "said over an hour in."),
    ]


USAGE = {"type": "duration", "seconds": 3728}  # 3728.00049 s: 3728.0 to the millisecond


def test_json_and_text() -> None:
    assert render(TRANSCRIPT, "json") == (
        json.dumps({"text": TEXT, "usage": USAGE}),
        "application/json",
    )
    assert render(TRANSCRIPT, "text") == (TEXT + "\n", "text/plain; charset=utf-8")


@pytest.mark.parametrize(
    ("duration", "seconds"), [(0.2, 1), (11.0, 11), (11.0004, 11), (11.0006, 12), (59.5, 60)]
)
def test_usage_is_whole_seconds_rounded_up(duration: float, seconds: int) -> None:
    reply = json.loads(render(replace(TRANSCRIPT, duration=duration), "json")[0])
    assert reply["usage"] == {"type": "duration", "seconds": seconds}


def test_json_with_logprobs_joins_the_tokens_of_every_segment() -> None:
    tokens = [
        (" Hello", -0.1),
        (" world.", -0.2),
        (" Second", -0.3),
        (" line,", -0.01),
        (" said over an hour in.", 0.0),
    ]
    logprobs = [TokenLogprob(t, p, tuple(t.encode())) for t, p in tokens]
    segments = TRANSCRIPT.segments
    transcript = replace(
        TRANSCRIPT,
        text=TEXT.lstrip(),
        segments=(
            replace(segments[0], logprobs=tuple(logprobs[:2])),
            replace(segments[1], logprobs=tuple(logprobs[2:4])),
            replace(segments[2], logprobs=tuple(logprobs[4:])),
        ),
    )
    reply = json.loads(render(transcript, "json", logprobs=True)[0])
    assert list(reply) == ["text", "logprobs", "usage"]
    assert reply["logprobs"][0] == {"token": "Hello", "logprob": -0.1, "bytes": list(b"Hello")}
    assert reply["logprobs"][1] == {"token": " world.", "logprob": -0.2, "bytes": list(b" world.")}
    assert "".join(item["token"] for item in reply["logprobs"]) == reply["text"]
    assert bytes(b for item in reply["logprobs"] for b in item["bytes"]).decode() == reply["text"]
    parsed = Transcription.model_validate(reply)
    assert parsed.usage is not None and parsed.usage.seconds == 3728
    assert [item.logprob for item in parsed.logprobs or []] == [p for _, p in tokens]


def test_leading_space_is_stripped_across_blank_tokens_and_split_characters() -> None:
    e_acute = "é".encode()  # two bytes, the first token ends inside it
    logprobs = [
        TokenLogprob(" ", -0.5, (32,)),
        TokenLogprob(" caf\ufffd", -0.1, (32, 99, 97, 102, e_acute[0])),
        TokenLogprob("\ufffd", -0.2, (e_acute[1],)),
    ]
    stripped = strip_leading_space(logprobs)
    assert [t.token for t in stripped] == ["", "caf\ufffd", "\ufffd"]
    assert bytes(b for t in stripped for b in t.bytes).decode() == "café"


def test_verbose_json_with_segments_only_by_default() -> None:
    body, content_type = render(TRANSCRIPT, "verbose_json", task="translate")
    assert content_type == "application/json"
    reply = json.loads(body)
    assert list(reply) == ["task", "language", "duration", "text", "segments", "usage"]
    assert reply["usage"] == USAGE
    assert reply["task"] == "translate"
    assert reply["language"] == "english"
    assert reply["duration"] == 3728.0
    assert reply["text"] == TEXT
    assert reply["segments"][2] == {
        "id": 2,
        "seek": 0,
        "start": 3725.123,
        "end": 3728.0,
        "text": " said over an hour in.",
        "tokens": [50364, 2425, 1002],
        "temperature": 0.0,
        "avg_logprob": -0.25,
        "compression_ratio": 1.2,
        "no_speech_prob": 0.01,
    }


@pytest.mark.parametrize(
    ("granularities", "keys"),
    [
        (frozenset({"word"}), {"words"}),
        (frozenset({"segment", "word"}), {"segments", "words"}),
        (frozenset(), set()),
    ],
)
def test_verbose_json_granularities(granularities: frozenset[str], keys: set[str]) -> None:
    reply = json.loads(render(TRANSCRIPT, "verbose_json", granularities=granularities)[0])
    assert set(reply) - {"task", "language", "duration", "text", "usage"} == keys
    if "words" in keys:
        assert reply["words"][0] == {"word": "Hello", "start": 0.0, "end": 0.6, "probability": 0.9}
        assert reply["words"][-1] == {
            "word": "over an hour in.",
            "start": 3726.1,
            "end": 3728.0,
            "probability": 0.6,
        }
        assert len(reply["words"]) == 6


def test_verbose_json_fits_openais_response_type() -> None:
    body, _ = render(TRANSCRIPT, "verbose_json", granularities=frozenset({"segment", "word"}))
    reply = TranscriptionVerbose.model_validate(json.loads(body))
    assert reply.language == "english" and reply.duration == 3728.0
    assert [w.word for w in reply.words or []][:3] == ["Hello", "world.", "Second"]
    assert [s.id for s in reply.segments or []] == [0, 1, 2]
    assert reply.segments is not None and reply.segments[1].end == 5.0
    assert reply.usage is not None and reply.usage.seconds == 3728


@pytest.mark.asyncio(loop_scope="session")  # the loop pytest-aiohttp's fixtures run in
@pytest.mark.parametrize("response_format", RESPONSE_FORMATS)
async def test_the_openai_client_parses_every_format(
    aiohttp_server: AiohttpServer, response_format: str
) -> None:
    """The official client, against a stand-in route that answers with our rendering."""
    body, content_type = render(TRANSCRIPT, response_format)

    async def transcriptions(request: web.Request) -> web.Response:
        assert (await request.post())["response_format"] == response_format
        return web.Response(body=body.encode(), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    server = await aiohttp_server(app)
    async with openai.AsyncOpenAI(api_key="unused", base_url=str(server.make_url("/v1"))) as client:
        reply = await client.audio.transcriptions.create(
            model="whisper-1", file=("clip.wav", b"RIFF"), response_format=response_format
        )
    match response_format:
        case "json":
            assert isinstance(reply, Transcription) and reply.text == TEXT
        case "verbose_json":
            assert isinstance(reply, TranscriptionVerbose) and len(reply.segments or []) == 3
        case _:
            assert reply == body


def test_language_name() -> None:
    assert language_name("en") == "english"
    assert language_name("English") == "english"
    assert language_name("yue") == "cantonese"
    assert language_name("") == ""


def test_unknown_format_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown response_format 'docx'.*json, text, srt, vtt"):
        render(TRANSCRIPT, "docx")


def test_unknown_granularity() -> None:
    with pytest.raises(ValueError, match="unknown timestamp granularities \\['char'\\]"):
        render(TRANSCRIPT, "verbose_json", granularities=frozenset({"word", "char"}))
