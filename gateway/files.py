"""File mode: transcribe decoded audio of any length, chunk by chunk (see `gateway.windows`).

Chunks go to the model concurrently (so Triton batches them) but never more than
`in_flight` of one file at a time, so a long file cannot crowd out everyone else; inside a
chunk, windows slide one after the other as openai-whisper's `transcribe()` does. Results
are reported in order as soon as every chunk before them is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gateway.asr import TranscribeOptions
from gateway.audio import SAMPLE_RATE
from gateway.transcript import Segment, Transcript
from gateway.triton_backend import PRIORITY_FILE, AsrBackend
from gateway.vad import VadConfig, speech_regions
from gateway.windows import Chunk, accept_window, plan_chunks, shift

# Quiet kept before the speech that opens a chunk (measured on the Harvard clip: tiny.en
# hears "A gold ring" as "A golden ring" with less than ~0.8 s of lead-in).
LEAD_SECONDS = 1.0
# Pauses at least this long separate independent chunks.
SPLIT_PAUSE_SECONDS = 1.0
# Earlier text of the chunk conditions the next window's decoder, as in transcribe().
PROMPT_CHARS = 800

@dataclass(frozen=True)
class FileProgress:
    processed: float  # seconds of audio done, from the start
    duration: float
    delta: str  # text committed since the previous report
    segments: tuple[Segment, ...]  # segments committed since the previous report
    language: str


@dataclass(frozen=True)
class WindowDone:
    """What one window of a chunk added: final segments, and how far the chunk has got."""

    segments: tuple[Segment, ...]
    position: float  # seconds
    language: str


_CHUNK_DONE = None


def _prompt(user_prompt: str | None, segments: Sequence[Segment]) -> str | None:
    previous = "".join(segment.text for segment in segments)[-PROMPT_CHARS:].strip()
    return " ".join(part for part in (user_prompt, previous) if part) or None


async def transcribe_chunk(
    backend: AsrBackend,
    audio: np.ndarray,
    chunk: Chunk,
    options: TranscribeOptions,
    *,
    window: int,
    speech: Sequence[tuple[float, float]],
    emit: Callable[[WindowDone], None],
    priority: int = PRIORITY_FILE,
) -> None:
    """Read one chunk window after window; `emit` each window's final segments."""
    segments: list[Segment] = []
    position = chunk.start
    while position < chunk.end:
        end = min(position + window, chunk.end)
        result = await backend.transcribe(
            audio[position:end],
            replace(options, prompt=_prompt(options.prompt, segments)),
            priority=priority,
        )
        offset = position / SAMPLE_RATE
        kept, resume = accept_window(
            [shift(segment, offset) for segment in result.segments],
            window=(offset, end / SAMPLE_RATE),
            chunk_end=chunk.end / SAMPLE_RATE,
            speech=speech,
        )
        segments += kept
        position = max(int(round(resume * SAMPLE_RATE)), position + 1)
        emit(WindowDone(tuple(kept), min(position, chunk.end) / SAMPLE_RATE, result.language))


async def transcribe_audio(
    backend: AsrBackend,
    audio: np.ndarray,
    options: TranscribeOptions,
    *,
    window_seconds: float,
    in_flight: int,
) -> AsyncIterator[FileProgress]:
    """Progress reports, one per window in file order; their deltas, joined, are the text.

    Every chunk runs as its own task, at most `in_flight` at a time; the reports of a chunk
    are passed on as soon as all chunks before it are done.
    """
    duration = audio.size / SAMPLE_RATE
    regions = speech_regions(audio, SAMPLE_RATE)
    # unpadded, to judge how much speech a window's transcript left out
    speech = [
        (start / SAMPLE_RATE, end / SAMPLE_RATE)
        for start, end in speech_regions(audio, SAMPLE_RATE, VadConfig(pad_seconds=0.0))
    ]
    chunks = plan_chunks(
        regions,
        split_pause=int(SPLIT_PAUSE_SECONDS * SAMPLE_RATE),
        lead=int(LEAD_SECONDS * SAMPLE_RATE),
    )
    slots = asyncio.Semaphore(in_flight)
    reports: list[asyncio.Queue[WindowDone | None]] = [asyncio.Queue() for _ in chunks]

    async def run(chunk: Chunk) -> None:
        async with slots:
            try:
                await transcribe_chunk(
                    backend, audio, chunk, options,
                    window=int(window_seconds * SAMPLE_RATE),
                    speech=speech,
                    emit=reports[chunk.index].put_nowait,
                )
            finally:
                reports[chunk.index].put_nowait(_CHUNK_DONE)

    tasks = [asyncio.create_task(run(chunk)) for chunk in chunks]
    language, started = options.language or "", False
    try:
        for task, queue in zip(tasks, reports):
            while (done := await queue.get()) is not _CHUNK_DONE:
                language = language or done.language
                delta = "".join(segment.text for segment in done.segments)
                if not started:
                    delta = delta.lstrip()
                    started = bool(delta)
                yield FileProgress(done.position, duration, delta, done.segments, language)
            await task  # raises what the chunk raised
        yield FileProgress(duration, duration, "", (), language)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def assemble(reports: Sequence[FileProgress], duration: float) -> Transcript:
    """The transcript that a run's progress reports add up to."""
    return Transcript(
        text="".join(report.delta for report in reports),
        language=reports[-1].language if reports else "",
        duration=duration,
        segments=tuple(segment for report in reports for segment in report.segments),
    )


async def collect(progress: AsyncIterator[FileProgress], duration: float) -> Transcript:
    return assemble([report async for report in progress], duration)
