"""What a live stream's client sends: its `config` message, and audio frames in the format it
names, turned into 16 kHz mono float32 (`FrameDecoder`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from gateway.modes.audio import SAMPLE_RATE

ENCODINGS = {"pcm_s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MAX_CHANNELS = 8


class StreamProtocolError(ValueError):
    """A message or frame the session cannot use; reported, and the session goes on."""


@dataclass(frozen=True)
class StreamConfig:
    language: str | None = None
    prompt: str | None = None
    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm_s16le"
    channels: int = 1

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> StreamConfig:
        unknown = set(message) - {
            "type",
            "language",
            "prompt",
            "sample_rate",
            "encoding",
            "channels",
        }
        if unknown:
            raise StreamProtocolError(f"unknown config fields: {', '.join(sorted(unknown))}")
        config = cls(
            language=message.get("language") or None,
            prompt=message.get("prompt") or None,
            sample_rate=message.get("sample_rate", SAMPLE_RATE),
            encoding=message.get("encoding", "pcm_s16le"),
            channels=message.get("channels", 1),
        )
        for name in ("language", "prompt"):
            if getattr(config, name) is not None and not isinstance(getattr(config, name), str):
                raise StreamProtocolError(f"config {name} must be a string")
        if (
            not isinstance(config.sample_rate, int)
            or not MIN_SAMPLE_RATE <= config.sample_rate <= MAX_SAMPLE_RATE
        ):
            raise StreamProtocolError(
                f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}"
            )
        if not isinstance(config.encoding, str) or config.encoding not in ENCODINGS:
            raise StreamProtocolError(f"encoding must be one of {', '.join(ENCODINGS)}")
        if not isinstance(config.channels, int) or not 1 <= config.channels <= MAX_CHANNELS:
            raise StreamProtocolError(f"channels must be an integer from 1 to {MAX_CHANNELS}")
        return config


class FrameDecoder:
    """Raw frames in the configured format → 16 kHz mono float32 (channels averaged)."""

    def __init__(self, config: StreamConfig) -> None:
        self.dtype = ENCODINGS[config.encoding]
        self.channels = config.channels
        self.frame_bytes = self.dtype.itemsize * config.channels
        self.resampler = (
            soxr.ResampleStream(config.sample_rate, SAMPLE_RATE, 1, dtype="float32")
            if config.sample_rate != SAMPLE_RATE
            else None
        )

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) % self.frame_bytes:
            raise StreamProtocolError(
                f"a binary frame of {len(data)} bytes is not a whole number of "
                f"{self.frame_bytes}-byte samples; frame dropped"
            )
        samples = np.frombuffer(data, self.dtype).astype(np.float32)
        if self.dtype.kind == "i":
            samples /= 32768.0
        elif not np.all(np.isfinite(samples)):
            raise StreamProtocolError("a frame contains NaN or infinite samples; frame dropped")
        mono = samples.reshape(-1, self.channels).mean(axis=1) if self.channels > 1 else samples
        mono = np.clip(mono, -1.0, 1.0)
        return self.resampler.resample_chunk(mono) if self.resampler else mono

    def flush(self) -> np.ndarray:
        if self.resampler is None:
            return np.zeros(0, np.float32)
        return self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
