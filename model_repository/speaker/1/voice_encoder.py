"""Resemblyzer's voice encoder, rewritten on torch alone: the same network, the same front end.

resemblyzer (Apache-2.0) ships a speaker encoder trained with the GE2E loss: 40 mel bands of
16 kHz audio (25 ms windows every 10 ms, power, not log), a 3-layer LSTM of 256 units, a linear
layer, ReLU and L2 normalisation: one 256-d embedding per partial utterance of 160 frames
(1.6 s). Its code imports librosa and webrtcvad, which the model does not need: this module
loads only the weights (`weights/` beside this file, written by `python -m export.speaker`) and
computes what `resemblyzer.VoiceEncoder` computes, on CPU or CUDA, for many windows at once:

- the mel spectrogram as `librosa.feature.melspectrogram(y, sr=16000, n_fft=400,
  hop_length=160, n_mels=40)` (centred frames padded with zeros, periodic Hann window, power
  2, Slaney mel scale and area normalisation);
- `normalize_volume` as resemblyzer's preprocessing (raised to -30 dBFS, never lowered; its
  silence trimming is left to the caller, which knows where the speech is);
- `partial_slices` as `VoiceEncoder.compute_partial_slices`, and `utterance_embedding` as
  `VoiceEncoder.embed_utterance` (rate 1.3 partials a second, coverage 0.75).

Imports numpy and torch only, so it is tested without Triton.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s: the length of audio each embedding describes
HIDDEN = 256
EMBEDDING_SIZE = 256
LAYERS = 3
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1
# embed_utterance's defaults: 1.3 partials a second, a last partial kept when 3/4 is audio
UTTERANCE_RATE = 1.3
UTTERANCE_MIN_COVERAGE = 0.75
STATE_KEYS = frozenset(
    {
        *(
            f"lstm.{kind}_l{layer}"
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for layer in range(LAYERS)
        ),
        "linear.weight",
        "linear.bias",
    }
)


def _hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    frequencies = np.asarray(frequencies, dtype=np.float64)
    mels = frequencies / (200.0 / 3)
    log_region = frequencies >= 1000.0
    mels[log_region] = 15.0 + np.log(frequencies[log_region] / 1000.0) / (np.log(6.4) / 27.0)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    frequencies = mels * (200.0 / 3)
    log_region = mels >= 15.0
    frequencies[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return frequencies


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> np.ndarray:
    """`librosa.filters.mel(sr, n_fft, n_mels)`: triangles on the Slaney scale from 0 Hz to
    Nyquist, each scaled to unit area (norm="slaney"); shape [n_mels, 1 + n_fft // 2]."""
    fft_frequencies = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    edges = _mel_to_hz(
        np.linspace(
            _hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sample_rate / 2]))[0], n_mels + 2
        )
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_frequencies[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def normalize_volume(audio: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """resemblyzer's `normalize_volume(wav, -30, increase_only=True)`: audio quieter than
    `target_dbfs` (RMS) raised to it; louder audio, and silence, left as they are."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) * INT16_MAX
    if rms == 0.0:
        return audio
    change = target_dbfs - 20.0 * math.log10(rms / INT16_MAX)
    if change < 0:
        return audio
    return (audio * np.float32(10 ** (change / 20))).astype(np.float32)


def frame_count(samples: int) -> int:
    """How many mel frames `samples` of audio give (centred frames: one per hop, plus one)."""
    return 1 + samples // HOP


def partial_slices(samples: int, frame_step: int, min_coverage: float) -> list[tuple[int, int]]:
    """`VoiceEncoder.compute_partial_slices` in frames: (first, end) of each partial of
    PARTIAL_FRAMES frames, `frame_step` frames apart, covering the audio; the last is kept when
    at least `min_coverage` of it is audio (and always when it is the only one). Partials may
    reach past the audio's end: the audio is padded with zeros to the last one's end."""
    if not 0 < frame_step <= PARTIAL_FRAMES:
        raise ValueError(f"frame_step must be 1..{PARTIAL_FRAMES}, got {frame_step}")
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    frames = int(np.ceil((samples + 1) / HOP))
    steps = max(1, frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [(start, start + PARTIAL_FRAMES) for start in range(0, steps, frame_step)]
    last_start = slices[-1][0] * HOP
    coverage = (samples - last_start) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(slices) > 1:
        slices.pop()
    return slices


def utterance_frame_step(rate: float = UTTERANCE_RATE) -> int:
    """The frames between partials at `rate` partials a second, as resemblyzer rounds it."""
    return int(np.round((SAMPLE_RATE / rate) / HOP))


class VoiceEncoder(nn.Module):
    """The network of `resemblyzer.VoiceEncoder` (its weights' names and shapes)."""

    window: torch.Tensor  # buffers, not weights: made here, moved with the module
    mel_basis: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING_SIZE)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank()), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.linear.weight.device

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of partials: mels [batch, frames, 40] -> [batch, 256]."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    def mel_frames(self, audio: np.ndarray) -> torch.Tensor:
        """The power mel spectrogram of `audio` (float32 samples), [frames, 40], on the
        model's device: librosa's melspectrogram, transposed."""
        samples = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        spectrum = torch.stft(
            samples,
            n_fft=N_FFT,
            hop_length=HOP,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spectrum.real.square() + spectrum.imag.square()
        return (self.mel_basis @ power).T.contiguous()


@dataclass(frozen=True)
class Embedded:
    """One audio's embeddings: each window's (`windows` [n, 256], window i covering frames
    `slices[i]`, 10 ms each) and the utterance's as `embed_utterance` computes it."""

    windows: np.ndarray
    slices: list[tuple[int, int]]
    utterance: np.ndarray


def _mean_direction(embeddings: np.ndarray) -> np.ndarray:
    mean = embeddings.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


@torch.inference_mode()
def embed_batch(
    encoder: VoiceEncoder,
    audios: Sequence[np.ndarray],
    *,
    window_step: int,
    window_min_coverage: float = 0.5,
    max_partials: int = 512,
) -> list[Embedded]:
    """Embed each audio (16 kHz float32, already volume-normalised) as windows of 1.6 s every
    `window_step` frames and as one utterance embedding. A partial that both need (all of
    them when `window_step` is the utterance's 77 frames) is computed once, and every partial
    of every audio goes through the LSTM together, `max_partials` at a time."""
    utterance_step = utterance_frame_step()
    plans, partials = [], []
    for audio in audios:
        windows = partial_slices(audio.size, window_step, window_min_coverage)
        utterance = partial_slices(audio.size, utterance_step, UTTERANCE_MIN_COVERAGE)
        starts = sorted({start for start, _ in windows} | {start for start, _ in utterance})
        end = (starts[-1] + PARTIAL_FRAMES) * HOP
        padded = np.pad(audio, (0, end - audio.size)) if end > audio.size else audio
        mel = encoder.mel_frames(padded)
        partials.append(torch.stack([mel[start : start + PARTIAL_FRAMES] for start in starts]))
        plans.append((windows, utterance, {start: i for i, start in enumerate(starts)}))
    everything = torch.cat(partials)
    outputs = (
        torch.cat(
            [
                encoder(everything[i : i + max_partials])
                for i in range(0, len(everything), max_partials)
            ]
        )
        .cpu()
        .numpy()
    )
    results, cursor = [], 0
    for (windows, utterance, index), computed in zip(plans, partials, strict=True):
        mine = outputs[cursor : cursor + len(computed)]
        cursor += len(computed)
        results.append(
            Embedded(
                windows=np.ascontiguousarray(mine[[index[start] for start, _ in windows]]),
                slices=windows,
                utterance=_mean_direction(mine[[index[start] for start, _ in utterance]]),
            )
        )
    return results
