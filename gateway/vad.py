"""Where the speech is: an energy voice-activity detector over 20 ms frames (pure numpy).

Whisper invents text on silence and, given a window that starts with a long silence, may
judge the whole window silent; a window cut mid-sentence loses its last words. Knowing
where speech is lets file mode skip silence and cut windows in pauses.

The threshold adapts to the recording: a frame is speech when it is clearly above the
noise floor (the quiet end of the file's frame levels) and above an absolute minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class VadConfig:
    above_floor_db: float = 12.0  # speech is this much louder than the noise floor
    min_speech_dbfs: float = -55.0  # and at least this loud
    floor_percentile: float = 10.0
    bridge_seconds: float = 0.5  # pauses shorter than this stay inside a region
    pad_seconds: float = 0.3  # margin kept around each region
    min_speech_seconds: float = 0.1  # shorter bursts are clicks, not speech


def frame_levels(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS level of each 20 ms frame in dBFS."""
    frame = int(FRAME_SECONDS * sample_rate)
    count = max(audio.size // frame, 1)
    frames = np.resize(audio, count * frame).reshape(count, frame) if audio.size >= frame else audio[None, :]
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def speech_regions(
    audio: np.ndarray, sample_rate: int, config: VadConfig = VadConfig()
) -> list[tuple[int, int]]:
    """(start, end) sample ranges that contain speech, padded, in order, not overlapping."""
    if audio.size == 0:
        return []
    levels = frame_levels(audio, sample_rate)
    threshold = max(
        float(np.percentile(levels, config.floor_percentile)) + config.above_floor_db,
        config.min_speech_dbfs,
    )
    voiced = np.flatnonzero(levels > threshold)
    if voiced.size == 0:
        return []
    bridge = int(config.bridge_seconds / FRAME_SECONDS)
    breaks = np.flatnonzero(np.diff(voiced) > bridge)
    starts = np.concatenate([[voiced[0]], voiced[breaks + 1]])
    ends = np.concatenate([voiced[breaks], [voiced[-1]]]) + 1
    frame = int(FRAME_SECONDS * sample_rate)
    pad = int(config.pad_seconds * sample_rate)
    regions: list[tuple[int, int]] = []
    for start, end in zip(starts, ends):
        if (end - start) * FRAME_SECONDS < config.min_speech_seconds:
            continue
        first, last = max(int(start) * frame - pad, 0), min(int(end) * frame + pad, audio.size)
        if regions and first <= regions[-1][1]:
            regions[-1] = (regions[-1][0], last)
        else:
            regions.append((first, last))
    return regions
