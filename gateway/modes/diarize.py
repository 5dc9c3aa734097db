"""Diarization of a file: speaker embeddings of its speech, clustered, as labels on its segments.

The voice detector's speech regions of the file (from the scores file mode cut its windows
with, where the caller passes them; unpadded) go to the speaker model, each as one request
(at most `REGION_SECONDS`, longer regions in pieces), concurrently, so Triton batches them;
its windows of 1.6 s every 0.77 s find the changes of speaker inside a long region too.
Every window of the file is then clustered without a known count of speakers
(`gateway.core.diarization.cluster_windows`: windows over a second of speech or more found
the speakers, shorter ones join the nearest), the regions are cut into speaker turns where
the windows' speaker changes, and each word gets the turn it lies in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gateway.core.contract import SpeakerBackend
from gateway.core.diarization import (
    MAX_SPEAKERS,
    SpeakerSegment,
    SpeakerWindow,
    cluster_windows,
    label_segments,
    mean_direction,
    speaker_names,
    speaker_turns,
)
from gateway.core.transcript import Segment
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.priority import as_file_work
from gateway.modes.vad import VadConfig, score_speech, speech_regions

REGION_SECONDS = 300.0  # the longest piece sent as one request (the model takes 600 s)
MIN_REGION_SECONDS = 0.4  # shorter speech says too little about a voice to embed alone


@dataclass(frozen=True)
class SpeakerCount:
    """What the caller knows of how many people speak (OpenAI-style min/max_speakers)."""

    min_speakers: int = 1
    max_speakers: int = MAX_SPEAKERS


def _pieces(regions: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    longest = int(REGION_SECONDS * SAMPLE_RATE)
    pieces = []
    for start, end in regions:
        if end - start < MIN_REGION_SECONDS * SAMPLE_RATE:
            continue
        pieces += [(first, min(first + longest, end)) for first in range(start, end, longest)]
    return pieces


@dataclass(frozen=True)
class Speech:
    """Where `audio` holds speech (seconds, unpadded) and the speaker model's windows over it."""

    regions: list[tuple[float, float]]
    windows: list[SpeakerWindow]


async def embed_speech(
    backend: SpeakerBackend,
    audio: np.ndarray,
    *,
    scores: np.ndarray | None = None,
    in_flight: int = 4,
) -> Speech:
    """The speech regions of `audio` and the speaker model's windows over them, in file time.
    `scores`: the detector's, where the transcription already has them."""
    if scores is None:
        scores = await score_speech(audio)  # stops within a block when the client is gone
    regions = await as_file_work(
        speech_regions, scores, audio.size, replace(VadConfig(), pad_seconds=0.0)
    )
    slots = asyncio.Semaphore(in_flight)

    async def embed(start: int, end: int) -> list[SpeakerWindow]:
        async with slots:
            result = await backend.embed_speakers(audio[start:end])
        offset, last = start / SAMPLE_RATE, end / SAMPLE_RATE
        return [
            SpeakerWindow(
                offset + float(first),
                min(offset + float(first) + result.window_seconds, last),
                embedding,
            )
            for first, embedding in zip(result.starts, result.embeddings, strict=True)
        ]

    found = await asyncio.gather(*(embed(start, end) for start, end in _pieces(regions)))
    return Speech(
        [(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in regions],
        [window for windows in found for window in windows],
    )


async def diarize(
    backend: SpeakerBackend,
    audio: np.ndarray,
    segments: Sequence[Segment],
    count: SpeakerCount = SpeakerCount(),
    known: Sequence[tuple[str, np.ndarray]] = (),
    scores: np.ndarray | None = None,
) -> list[SpeakerSegment]:
    """`segments` (file time, with words) labelled with speakers, split where the speaker
    changes: a speaker whose voice matches one of the `known` (name, reference audio) has its
    name, the others are A, B, ... in order of first appearance. `scores`: the voice
    detector's of `audio`, where the caller has them (scored here otherwise)."""
    speech, references = await asyncio.gather(
        embed_speech(backend, audio, scores=scores),
        asyncio.gather(*(backend.embed_speakers(reference) for _, reference in known)),
    )
    windows = speech.windows
    embeddings = np.array([window.embedding for window in windows]).reshape(len(windows), -1)
    labels = await as_file_work(  # 0.2-0.3 s for the ~800 windows of 10 minutes
        cluster_windows,
        windows,
        min_speakers=min(count.min_speakers, max(len(windows), 1)),
        max_speakers=count.max_speakers,
    )
    names = speaker_names(
        embeddings,
        labels,
        [
            (name, mean_direction(result.embeddings))
            for (name, _), result in zip(known, references, strict=True)
        ],
    )
    return label_segments(segments, speaker_turns(speech.regions, windows, labels), names)
