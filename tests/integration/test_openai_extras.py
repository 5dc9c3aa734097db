"""OpenAI's transcription extras through the whole stack (the official `openai` SDK → gateway
→ real Triton → tiny.en): `include=["logprobs"]` in `json` and in the stream's events,
`usage`, `chunking_strategy`, and each word's probability in `verbose_json`; and, in this
process, that keeping the log-probabilities changes nothing of the decode."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import openai
import pytest
import torch
import whisper
from openai import AsyncOpenAI

from testsupport.clips import JFK_TEXT
from testsupport.wer import normalized_words, word_error_rate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from checkpoint import load_model
from decoder import DecodePrompt, WhisperDecoder
from whisper_adaptations import encode

pytestmark = pytest.mark.integration


def client_of(gateway) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="not-checked")


def check_logprobs(logprobs, text: str) -> None:
    """Tokens that join to `text` (and so do their bytes), each log-probability at most 0."""
    assert logprobs, "no logprobs"
    assert "".join(item.token for item in logprobs) == text
    # (the SDK types the json answer's bytes as floats, the events' as ints)
    assert bytes(int(b) for item in logprobs for b in item.bytes).decode("utf-8") == text
    assert all(item.logprob <= 0.0 for item in logprobs)
    assert any(item.logprob < 0.0 for item in logprobs)


async def test_logprobs_and_usage_in_json(gateway, clips) -> None:
    clip = clips["jfk.flac"]
    reply = await client_of(gateway).audio.transcriptions.create(
        model="whisper-1", file=clip.path.open("rb"), include=["logprobs"]
    )
    assert word_error_rate(JFK_TEXT, reply.text) == 0.0
    check_logprobs(reply.logprobs, reply.text)
    assert reply.usage is not None and reply.usage.type == "duration"
    assert reply.usage.seconds == math.ceil(clip.audio.size / 16_000) == 11


async def test_logprobs_and_usage_in_the_stream_events(gateway, clips) -> None:
    clip = clips["OSR_us_000_0034_8k.wav"]  # 35.5 s: more than one window
    events = await client_of(gateway).audio.transcriptions.create(
        model="whisper-1", file=clip.path.open("rb"), stream=True, include=["logprobs"]
    )
    deltas, done = [], None
    async for event in events:
        if event.type == "transcript.text.delta":
            check_logprobs(event.logprobs, event.delta)
            deltas.append(event)
        elif event.type == "transcript.text.done":
            done = event
    assert len(deltas) >= 2 and done is not None
    assert "".join(event.delta for event in deltas) == done.text
    check_logprobs(done.logprobs, done.text)
    assert [item.token for item in done.logprobs] == [
        item.token for event in deltas for item in event.logprobs
    ]
    assert word_error_rate(clip.text, done.text) == 0.0
    # the SDK types this event's usage as token usage; hermes bills whisper-1's way
    assert done.usage is not None and done.usage.type == "duration"
    assert done.usage.seconds == 36  # 35.5 s, rounded up


async def test_usage_in_verbose_json_and_word_probabilities(gateway, clips) -> None:
    reply = await client_of(gateway).audio.transcriptions.create(
        model="whisper-1",
        file=clips["jfk.flac"].path.open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert reply.usage is not None and reply.usage.seconds == 11
    assert len(reply.words) == len(normalized_words(JFK_TEXT))
    probabilities = [word.probability for word in reply.words]  # extra field: kept by the SDK
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert sum(probabilities) / len(probabilities) > 0.5  # JFK is clear speech


async def test_a_server_vad_chunking_strategy_transcribes_as_auto_does(gateway, clips) -> None:
    create = client_of(gateway).audio.transcriptions.create
    path = clips["OSR_us_000_0034_8k.wav"].path
    auto = await create(model="whisper-1", file=path.open("rb"), chunking_strategy="auto")
    tuned = await create(
        model="whisper-1",
        file=path.open("rb"),
        chunking_strategy={
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        },
    )
    for reply in (auto, tuned):
        assert word_error_rate(clips["OSR_us_000_0034_8k.wav"].text, reply.text) == 0.0


async def test_a_malformed_chunking_strategy_is_a_400_naming_it(gateway, clips) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client_of(gateway).audio.transcriptions.create(
            model="whisper-1",
            file=clips["jfk.flac"].path.open("rb"),
            chunking_strategy={"type": "server_vad", "threshold": 2},
        )
    error = caught.value
    assert error.status_code == 400 and error.param == "chunking_strategy"
    assert error.code == "invalid_value"
    assert error.body["message"] == (
        'chunking_strategy must be "auto" or an object {"type": "server_vad", '
        '"threshold": 0-1, "prefix_padding_ms": ..., "silence_duration_ms": ...}: '
        "threshold must be a number from 0 to 1, got '2'"
    )


def test_keeping_logprobs_changes_nothing_of_the_decode(clips) -> None:
    """Same tokens and scores with and without them; each token's log-probability is the
    step's, so with the end of text's they add up to the decode's total."""
    model = load_model("tiny.en", torch.device("cpu")).model
    decoder = WhisperDecoder(model)
    tokenizer = whisper.tokenizer.get_tokenizer(False)
    prompt = DecodePrompt.of(tokenizer, "en", model.dims.n_text_ctx, None, 0.0)
    audios = [clips["jfk.flac"].audio, clips["hotwords.mp3"].audio]
    with torch.inference_mode():
        features = [
            encode(
                model.encoder,
                whisper.pad_or_trim(
                    whisper.log_mel_spectrogram(torch.from_numpy(audio), padding=480_000),
                    whisper.audio.N_FRAMES,
                )[None],
            )[0]
            for audio in audios
        ]
        contexts = decoder.audio_contexts(features)
        plain = decoder.decode(contexts, prompt)
        kept = decoder.decode(contexts, prompt, token_logprobs=True)
    for without, with_them in zip(plain, kept, strict=True):
        assert without.tokens == with_them.tokens and without.token_logprobs is None
        assert with_them.avg_logprob == without.avg_logprob
        assert len(with_them.token_logprobs) == len(with_them.tokens)
        assert all(value <= 0.0 for value in with_them.token_logprobs)
        total = with_them.avg_logprob * (len(with_them.tokens) + 1)
        assert sum(with_them.token_logprobs) >= total - 1e-3  # the end of text's is the rest
