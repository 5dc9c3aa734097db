"""The CUDA configuration of the model (fp16 weights), run on this machine's CPU: the same
module layout and dtypes as on a GPU, so a dtype mismatch shows here and not only on a GPU host.
(Found on an H200: `model.half()` made openai-whisper's float32 layer norms fail at load.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from checkpoint import half_precision, load_model
from transcriber import BatchTranscriber, TranscriptionRequest
from whisper.model import LayerNorm

from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def half_model() -> torch.nn.Module:
    return half_precision(load_model("tiny.en", torch.device("cpu")).model)


def test_layer_norms_stay_float32_and_the_rest_is_fp16(half_model: torch.nn.Module) -> None:
    norms = {
        id(p) for m in half_model.modules() if isinstance(m, LayerNorm) for p in m.parameters()
    }
    assert norms
    for parameter in half_model.parameters():
        assert parameter.dtype == (torch.float32 if id(parameter) in norms else torch.float16)


def test_fp16_transcribes_jfk_word_for_word_with_word_times(half_model, clips) -> None:
    clip = clips["jfk.flac"]
    transcriber = BatchTranscriber(half_model, fp16=True)
    (result,) = transcriber.transcribe(
        [TranscriptionRequest(clip.audio, language="en", word_timestamps=True)]
    )
    assert word_error_rate(clip.text, result.text) == 0.0
    ends = [word["end"] for segment in result.segments for word in segment["words"]]
    assert len(ends) == len(clip.text.split()) and ends == sorted(ends) and ends[-1] <= 11.1
