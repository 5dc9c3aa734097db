"""File mode: transcribe decoded audio of any length, window by window (`gateway.modes.windows`).

The voice detector scores the file, its speech is packed into independent windows of up to
30 s, and the windows go to the model concurrently, so Triton batches them; never more than
`in_flight` of one file at a time, so a long file cannot crowd out everyone else (and the
server bounds all file work together while live streams run: `gateway.modes.file_work`). A window
whose decode stopped inside its last segment has the rest read again, and a window whose
text fails the checks is read again in halves, before any of it is final. Results are
reported in file order as soon as every window before them is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gateway.core.contract import Priority, TranscribeOptions, WindowReader
from gateway.core.transcript import (
    MIN_AVG_LOGPROB,
    Segment,
    TokenLogprob,
    Transcript,
    strip_leading_space,
)
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import SpeechMap, VadConfig
from gateway.modes.windows import (
    Window,
    plan_windows,
    split_window,
    unfinished_rest,
    window_problems,
)

logger = logging.getLogger(__name__)
DEFAULT_VAD = VadConfig()


@dataclass(frozen=True)
class FileProgress:
    processed: float  # seconds of audio done, from the start
    duration: float
    delta: str  # text committed since the previous report
    segments: tuple[Segment, ...]  # segments committed since the previous report
    language: str
    # the delta's tokens and their log-probabilities (when asked for): they join to `delta`
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class WindowRead:
    """The final segments of one window (file time), and the language heard."""

    segments: tuple[Segment, ...]
    language: str


async def read_window(
    backend: WindowReader,
    audio: np.ndarray,
    window: Window,
    options: TranscribeOptions,
    *,
    scores: np.ndarray,
    priority: Priority,
    ended_before: float | None = None,
) -> WindowRead:
    """Transcribe one window. Where the decode stopped inside its last segment, keep what it
    finished and read the rest again; where its text fails the checks, read its halves.
    `ended_before`: where the read this window is the rest of closed its last segment."""
    result = await backend.transcribe(window.audio(audio), options, priority=priority)
    segments = tuple(window.to_file(segment) for segment in result.segments)
    if parts := unfinished_rest(segments, window, ended_before):
        done, rest = parts
        finished = segments[:-1]
        if not window_problems(finished, done, options.prompt):
            logger.info(
                "window %s: decode stopped at %.1f s, the rest read again",
                _span(window),
                rest.start / SAMPLE_RATE,
            )
            again = await read_window(
                backend,
                audio,
                rest,
                options,
                scores=scores,
                priority=priority,
                ended_before=segments[-1].end if segments[-1].complete else None,
            )
            return WindowRead(finished + again.segments, result.language)
    problems = window_problems(segments, window, options.prompt)
    halves = split_window(window, scores) if problems and not _unsure(segments) else None
    if halves is None:
        if problems:
            logger.info("window %s kept as it is: %s", _span(window), "; ".join(problems))
        return WindowRead(segments, result.language)
    logger.info("window %s read again in halves: %s", _span(window), "; ".join(problems))
    if "the prompt written out" in problems:
        options = replace(options, prompt=None)
    reads = await asyncio.gather(
        *(
            read_window(backend, audio, half, options, scores=scores, priority=priority)
            for half in halves
        )
    )
    return WindowRead(
        tuple(segment for read in reads for segment in read.segments),
        result.language,
    )


def _unsure(segments: tuple[Segment, ...]) -> bool:
    """Whether the model itself says it could not make out the words (every segment below
    Whisper's log-probability threshold after the whole fallback): halves fare no better,
    and in babble every window would be read again down to 4 s (3x the model time)."""
    return bool(segments) and all(segment.avg_logprob < MIN_AVG_LOGPROB for segment in segments)


def _span(window: Window) -> str:
    return f"{window.start / SAMPLE_RATE:.1f}-{window.end / SAMPLE_RATE:.1f} s"


async def transcribe_audio(
    backend: WindowReader,
    audio: np.ndarray,
    options: TranscribeOptions,
    *,
    window_seconds: float,
    in_flight: int,
    priority: Priority = Priority.FILE,
    vad: VadConfig = DEFAULT_VAD,
    found: SpeechMap | None = None,
) -> AsyncIterator[FileProgress]:
    """Progress reports, one per window in file order, then one at the end; their deltas,
    joined, are the text. `vad`: how the detector's scores become the speech that windows
    are cut around (OpenAI's `chunking_strategy`). `found`: what the detector already found
    in `audio` (a live stream's own scores); None: the audio is scored here, with `vad`."""
    duration = audio.size / SAMPLE_RATE
    if found is None:
        found = await SpeechMap.of(audio, vad)
    windows = plan_windows(
        found.regions,
        found.speech,
        found.scores,
        window=int(window_seconds * SAMPLE_RATE),
        total=audio.size,
    )
    slots = asyncio.Semaphore(in_flight)

    async def run(window: Window) -> WindowRead:
        async with slots:
            return await read_window(
                backend, audio, window, options, scores=found.scores, priority=priority
            )

    tasks = [asyncio.create_task(run(window)) for window in windows]
    language, started = options.language or "", False
    try:
        for window, task in zip(windows, tasks, strict=True):
            # shielded: a cancelled reader must not cancel this window first, or the next
            # window would take its slot and reach the model before `finally` stops it
            read = await asyncio.shield(task)
            language = language or read.language
            delta = "".join(segment.text for segment in read.segments)
            logprobs = tuple(token for segment in read.segments for token in segment.logprobs)
            if not started:
                delta, logprobs = delta.lstrip(), strip_leading_space(logprobs)
                started = bool(delta)
            yield FileProgress(
                window.end / SAMPLE_RATE, duration, delta, read.segments, language, logprobs
            )
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
