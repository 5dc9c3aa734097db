"""The model with its linear layers in int8 (the `cpu_int8` parameter): every linear layer
quantized, the decoder's fused self-attention projection too, and the text still right."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from checkpoint import load_model
from transcriber import BatchTranscriber, TranscriptionRequest

from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration
INT8_LINEAR = torch.ao.nn.quantized.dynamic.Linear


@pytest.fixture(scope="module")
def int8_transcriber() -> BatchTranscriber:
    loaded = load_model("tiny.en", torch.device("cpu"), int8=True)
    assert loaded.int8
    return BatchTranscriber(loaded.model, fp16=False)


def test_every_linear_layer_is_int8(int8_transcriber: BatchTranscriber) -> None:
    model = int8_transcriber.model
    float_linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert float_linears == []
    int8_linears = [m for m in model.modules() if isinstance(m, INT8_LINEAR)]
    # a block's attention has 4 projections and its MLP 2; a decoder block attends twice
    assert len(int8_linears) == 6 * model.dims.n_audio_layer + 10 * model.dims.n_text_layer
    assert all(isinstance(projection, INT8_LINEAR) for projection in int8_transcriber.decoder._qkv)


def test_int8_transcribes_files_and_stream_steps(int8_transcriber: BatchTranscriber, clips) -> None:
    jfk, harvard = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    window = harvard.audio[: 16_000 * 30]
    results = int8_transcriber.transcribe(
        [
            TranscriptionRequest(jfk.audio, language="en", word_timestamps=True),
            TranscriptionRequest(jfk.audio, language="en", word_timestamps=True, low_latency=True),
            TranscriptionRequest(window, language="en"),
        ]
    )
    assert word_error_rate(jfk.text, results[0].text) <= 0.05, results[0].text
    assert word_error_rate(jfk.text, results[1].text) <= 0.05, results[1].text
    eight_sentences = ". ".join(harvard.text.split(". ")[:8]) + "."  # its first 30 s
    assert word_error_rate(eight_sentences, results[2].text) <= 0.05, results[2].text
    ends = [word["end"] for segment in results[0].segments for word in segment["words"]]
    assert ends == sorted(ends) and 10.0 <= ends[-1] <= 11.1
