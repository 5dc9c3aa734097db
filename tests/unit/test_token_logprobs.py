"""The model's per-token log-probabilities (`LOGPROBS`): cut into segments with their text
tokens, and given as OpenAI's `logprobs` items (text, log-probability, UTF-8 bytes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from whisper.tokenizer import get_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from decoder import Decoded
from whisper_adaptations import DecodeThresholds, split_segments, window_segments

TOKENIZER = get_tokenizer(multilingual=False)


def timestamp(seconds: float) -> int:
    return TOKENIZER.timestamp_begin + round(seconds / 0.02)


def decoded(texts: list[str]) -> Decoded:
    """A decode of `texts` as timed segments, 2 s each, every token's log-probability -0.5
    (timestamps -0.1)."""
    tokens: list[int] = []
    for index, text in enumerate(texts):
        tokens += [timestamp(2.0 * index), *TOKENIZER.encode(text), timestamp(2.0 * index + 2)]
    logprobs = [-0.1 if token >= TOKENIZER.timestamp_begin else -0.5 for token in tokens]
    return Decoded(tokens, "".join(texts), "en", -0.4, 0.01, 0.0, 1.2, logprobs)


def test_logprobs_are_cut_with_their_text_tokens() -> None:
    decode = decoded([" Hello there.", " General Kenobi."])
    segments = split_segments(decode.tokens, TOKENIZER, 4.0, decode.token_logprobs)
    for segment in segments:
        assert segment.logprobs == [-0.5] * len(segment.tokens)
    assert split_segments(decode.tokens, TOKENIZER, 4.0)[0].logprobs is None


def test_segments_carry_logprobs_only_when_asked() -> None:
    decode = decoded([" Hello there."])
    assert "logprobs" not in window_segments(decode, TOKENIZER, 2.0, DecodeThresholds())[0]
    [segment] = window_segments(decode, TOKENIZER, 2.0, DecodeThresholds(), logprobs=True)
    assert [item["token"] for item in segment["logprobs"]] == [" Hello", " there", "."]
    assert {item["logprob"] for item in segment["logprobs"]} == {-0.5}
    assert [item["bytes"] for item in segment["logprobs"]] == [
        list(b" Hello"),
        list(b" there"),
        list(b"."),
    ]


@pytest.mark.parametrize("text", [" Hello there.", " Café crème, 東京 🎉!"])
def test_the_bytes_join_to_the_segment_text(text: str) -> None:
    [segment] = window_segments(decoded([text]), TOKENIZER, 2.0, DecodeThresholds(), logprobs=True)
    assert bytes(b for item in segment["logprobs"] for b in item["bytes"]).decode() == text
    assert segment["text"] == text
    if text.isascii():
        assert "".join(item["token"] for item in segment["logprobs"]) == text
