"""How file mode cuts audio into Whisper windows (pure: no I/O, no Triton).

1. **Chunks.** Speech regions (from `gateway.vad`) separated by pauses shorter than
   `split_pause` form one chunk; silence between chunks is never sent to the model (Whisper
   invents text on silence, and judges a window that opens with a long silence to be
   silent). Each chunk starts with up to `lead` of the quiet before it: Whisper misreads a
   first word it hears without a moment of quiet. Chunks are independent, so they are
   transcribed concurrently and Triton batches them.
2. **Sliding windows inside a chunk.** A chunk longer than 30 s is read as openai-whisper's
   `transcribe()` reads a file: a 30 s window, then the next window starts where the last
   *complete* segment ended, so consecutive windows overlap on the speech Whisper cut short.
   A segment touching the window's end, or speech the detector hears after the last segment,
   is decoded again at the start of the next window instead of being trusted or lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.transcript import Segment

# A segment ending this close to a window's end that is not the chunk's end was probably
# cut by the window: decode it again in the next window.
EDGE_SECONDS = 1.0
# Speech after the last segment, this long or more, was skipped by the model, not finished
# (shorter tails are the model's timestamps ending a little before the speech does).
MISSED_SPEECH_SECONDS = 1.0
MIN_ADVANCE_SECONDS = 1.0  # every window moves on at least this much


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # first sample
    end: int  # one past the last sample


def plan_chunks(
    regions: Sequence[tuple[int, int]], *, split_pause: int, lead: int
) -> list[Chunk]:
    """Group speech regions (sorted sample ranges) into chunks split at long pauses."""
    chunks: list[Chunk] = []
    for start, end in regions:
        if chunks and start - chunks[-1].end < split_pause:
            chunks[-1] = replace(chunks[-1], end=end)
        else:
            floor = chunks[-1].end if chunks else 0
            chunks.append(Chunk(len(chunks), max(start - lead, floor), end))
    return chunks


def shift(segment: Segment, seconds: float) -> Segment:
    return replace(
        segment,
        start=round(segment.start + seconds, 3),
        end=round(segment.end + seconds, 3),
        words=tuple(word.shifted(seconds) for word in segment.words),
    )


def _speech_between(regions: Sequence[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in regions)


def accept_window(
    segments: Sequence[Segment],
    *,
    window: tuple[float, float],
    chunk_end: float,
    speech: Sequence[tuple[float, float]],
) -> tuple[list[Segment], float]:
    """Which of a window's segments (file time) to keep, and where the next window starts.

    `speech` holds the speech regions in seconds. The next start is `chunk_end` when the
    chunk is done.
    """
    start, end = window
    kept = list(segments)
    if end < chunk_end:
        while kept and kept[-1].end > end - EDGE_SECONDS:
            kept.pop()  # probably cut by the window's edge: read it again from its start
    resume = kept[-1].end if kept else start
    if _speech_between(speech, resume, end) < MISSED_SPEECH_SECONDS:
        resume = end  # nothing left unread in this window
    if resume < start + MIN_ADVANCE_SECONDS:
        return list(segments), min(end, chunk_end)  # no progress possible: take what there is
    return kept, min(resume, chunk_end)
