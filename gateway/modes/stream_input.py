"""What a live stream's client sends: its `config` message, and audio frames in the format it
names, turned into 16 kHz mono float32 (`FrameDecoder`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from gateway.modes import g711
from gateway.modes.audio import SAMPLE_RATE


@dataclass(frozen=True)
class SampleFormat:
    bytes_per_sample: int
    to_float: Callable[[bytes], np.ndarray]  # raw bytes → float samples, interleaved
    exact: bool = True  # every value it can give is finite and in [-1, 1]


def _pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def _float32(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<f4").astype(np.float32)


ENCODINGS = {
    "pcm_s16le": SampleFormat(2, _pcm16),
    "f32le": SampleFormat(4, _float32, exact=False),
    "pcm_mulaw": SampleFormat(1, g711.decode_mulaw),  # G.711 μ-law (telephony, 8 kHz)
    "pcm_alaw": SampleFormat(1, g711.decode_alaw),  # G.711 A-law
}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MAX_CHANNELS = 8


class StreamProtocolError(ValueError):
    """A message or frame the session cannot use; reported, and the session goes on."""


MAX_HOTWORDS = 50
MAX_HOTWORD_CHARS = 64


@dataclass(frozen=True)
class StreamConfig:
    language: str | None = None
    prompt: str | None = None
    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm_s16le"
    channels: int = 1
    hotwords: tuple[str, ...] = ()  # names and terms the model should expect
    speech_events: bool = False  # send speech_started / speech_stopped (opt-in: new types)
    diarize: bool = False  # a `speaker` on each final (the speaker model, online clustering)

    @property
    def model_prompt(self) -> str | None:
        """What conditions the decoder: the hotwords as a list, then the client's prompt
        (Whisper follows the spelling of words it has just "heard" in its context)."""
        parts = [", ".join(self.hotwords), self.prompt or ""]
        return " ".join(part for part in parts if part) or None

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> StreamConfig:
        unknown = set(message) - {
            "type",
            "language",
            "prompt",
            "sample_rate",
            "encoding",
            "channels",
            "hotwords",
            "speech_events",
            "diarize",
        }
        if unknown:
            raise StreamProtocolError(f"unknown config fields: {', '.join(sorted(unknown))}")
        config = cls(
            language=message.get("language") or None,
            prompt=message.get("prompt") or None,
            sample_rate=message.get("sample_rate", SAMPLE_RATE),
            encoding=message.get("encoding", "pcm_s16le"),
            channels=message.get("channels", 1),
            hotwords=_hotwords(message.get("hotwords", [])),
            speech_events=message.get("speech_events", False),
            diarize=message.get("diarize", False),
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
        for name in ("speech_events", "diarize"):
            if not isinstance(getattr(config, name), bool):
                raise StreamProtocolError(f"{name} must be true or false")
        if not isinstance(config.channels, int) or not 1 <= config.channels <= MAX_CHANNELS:
            raise StreamProtocolError(f"channels must be an integer from 1 to {MAX_CHANNELS}")
        return config


def _hotwords(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise StreamProtocolError("hotwords must be a list of strings")
    words = tuple(word.strip() for word in value if word.strip())
    if len(words) > MAX_HOTWORDS or any(len(word) > MAX_HOTWORD_CHARS for word in words):
        raise StreamProtocolError(
            f"hotwords: at most {MAX_HOTWORDS}, each at most {MAX_HOTWORD_CHARS} characters"
        )
    return words


class FrameDecoder:
    """Raw frames in the configured format → 16 kHz mono float32 (channels averaged)."""

    def __init__(self, config: StreamConfig) -> None:
        self.format = ENCODINGS[config.encoding]
        self.channels = config.channels
        self.frame_bytes = self.format.bytes_per_sample * config.channels
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
        samples = self.format.to_float(data)
        if not self.format.exact and not np.all(np.isfinite(samples)):
            raise StreamProtocolError("a frame contains NaN or infinite samples; frame dropped")
        mono = samples.reshape(-1, self.channels).mean(axis=1) if self.channels > 1 else samples
        mono = np.clip(mono, -1.0, 1.0)
        return self.resampler.resample_chunk(mono) if self.resampler else mono

    def flush(self) -> np.ndarray:
        if self.resampler is None:
            return np.zeros(0, np.float32)
        return self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
