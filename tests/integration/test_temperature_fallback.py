"""The temperature fallback, with real tiny.en in this process: file windows retry a decode that
fails the checks at higher temperatures, as openai-whisper's `transcribe()` does; live streams'
low-latency steps are decoded once (a retry made every stream in the batch wait seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from checkpoint import load_model  # noqa: E402
from transcriber import BatchTranscriber, DecodeThresholds, TranscriptionRequest  # noqa: E402

from tests.wer import word_error_rate  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def strict_transcriber() -> BatchTranscriber:
    """Checks that no decode passes (log-probabilities are never above 0): every window fails."""
    model = load_model("tiny.en", torch.device("cpu")).model
    return BatchTranscriber(model, fp16=False, thresholds=DecodeThresholds(logprob=0.0))


def test_file_windows_are_retried_and_low_latency_requests_decoded_once(
    strict_transcriber, clips
) -> None:
    clip = clips["jfk.flac"]
    file_window, low_latency = strict_transcriber.transcribe([
        TranscriptionRequest(clip.audio, language="en"),
        TranscriptionRequest(clip.audio, language="en", low_latency=True),
    ])
    assert file_window.segments
    assert {segment["temperature"] for segment in file_window.segments} == {1.0}
    assert {segment["temperature"] for segment in low_latency.segments} == {0.0}
    assert all(segment["avg_logprob"] < 0.0 for segment in low_latency.segments)
    assert word_error_rate(clip.text, low_latency.text) == 0.0
