"""Where a batch's time goes: seconds per phase of the model's work, which the model adds to
Triton's metrics (`hermes_model_phase_seconds_total`). Triton times each execution as a
whole; this says whether the encoder, the decode loop (temperature fallback included), the
segments or word timing took it, so an operator can tell what a slow model is doing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# in the order a batch goes through them; "language" is detection, which only requests
# without a language need (next to nothing otherwise)
PHASES = ("features", "encode", "language", "decode", "segments", "word_timing")


class PhaseClock:
    """Seconds spent in each phase of one batch. On CUDA a phase ends when the GPU has done
    its work (`torch.cuda.synchronize`), or the next phase would be billed for it; the
    decode loop waits for the GPU every step anyway, so this costs next to nothing."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
