"""How file mode cuts audio into Whisper windows, and when a window's text is not to be
trusted (pure: no I/O, no Triton).

1. **Packed windows.** The speech regions the detector found (`gateway.modes.vad`) are packed in
   file order into windows of up to 30 s. A window is cut only between regions, i.e. in a
   pause, never inside a word; silences inside a window longer than `MAX_GAP_SECONDS` are
   shortened to it, and each window opens with up to `LEAD_SECONDS` of the quiet before its
   first speech (Whisper misreads a first word it hears without a moment of quiet). A full
   window is cut in its last quarter (`CUT_FROM_FRACTION`), a region longer than a window in
   its last pause there. Every window is independent (no
   previous text as prompt), so all windows of a file are decoded side by side and Triton
   batches them; a `Window` maps its own times back to the file's.
2. **Checks.** A window's text is held against what the detector heard in it: too few words
   for its seconds of speech, speech no segment covers, a sentence written twice, text that
   only echoes the prompt, output still too repetitive (Whisper's compression check) after
   the model's temperature fallback. A window that fails is read again in two halves, cut at
   its longest pause, down to `MIN_REREAD_SECONDS`. A decode that stopped inside its last
   segment (no closing timestamp) has the rest of its window read again from that
   segment's start, as `transcribe()` seeks there, until a read ends where the one before it
   did (`gateway.modes.files` does not split a window the
   model could not make out at all: see `_unsure` there). Text that is only unlikely (Whisper's
   log-probability check) is not read again: the model has already retried it at every
   temperature, and in noise halves fare no better (measured on the conversation composite
   under steady noise at 5 and 0 dB: the same WER within 3 points, at 1.5-1.7 times the
   model time).

Before this, a chunk of continuous speech was read as `transcribe()` reads a file, each
window starting where the last one's text ended, conditioned on it: one window whose decode
went wrong (a single 30 s segment holding a fraction of its speech, or sentences repeated
from the prompt) was accepted and the next one started after it, so its speech was lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.core.transcript import MAX_COMPRESSION_RATIO, Segment
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.vad import FRAME_SAMPLES

LEAD_SECONDS = 1.0
MAX_GAP_SECONDS = 1.0
# Left free at a window's end: speech that runs up to the end of a full 30 s window is often
# not transcribed at all (Whisper expects it to go on in the next window; in transcribe()
# the next window starts there), so a window holds at most 30 s minus this. With windows cut
# in their last quarter (below), 3 s left Whisper's last sentence out of 1 window in 10 on the
# conversation composite, where 2 s left it out of 3 (each read again: a second execution)
# and 4 s made more windows: 7.6 s against 8.0 and 8.3 s, at the same or lower WER.
TAIL_SECONDS = 3.0
# Speech without words: a window with at least this much speech ...
CHECKED_SPEECH_SECONDS = 3.0
# ... and fewer words per second of it (read speech: 2.5-3.5; a slow talker: ~1.8) lost some.
MIN_WORDS_PER_SPEECH_SECOND = 1.0
# A stretch of speech this long that no segment comes near was skipped ...
UNHEARD_SPEECH_SECONDS = 1.5
SEGMENT_SLACK_SECONDS = 0.5  # ... (segment times are this coarse)
MIN_REPEATED_WORDS = 4  # a sentence of this many words written twice is a decoding loop
# A full window is cut in its last quarter: at its longest pause there (a speaker's rather than a
# sentence's, when it holds both), or for one long region at its quietest frame. Cut anywhere in
# its second half, windows held 20 s of 28 on average, and a file cost a third more encoder passes.
CUT_FROM_FRACTION = 0.75
PAUSE_SCORE = 0.15  # a frame scoring under this is a pause (the detector's default release)
MIN_REREAD_SECONDS = 4.0  # a failed window is split while both halves are at least this long
MIN_UNFINISHED_SECONDS = 1.0  # what is read again after a decode that stopped early, at least
MISSED_AT_END_SECONDS = 0.5  # speech after a window's last segment that it left out
# A read again that closes its last segment this near where the read before closed it heard
# nothing more there: the speech after it is not read a third time (a stream's end read whose
# audio stops mid-breath went 12 s, 11 s, 3 s: three model calls for the same text)
SAME_END_SECONDS = 0.2


@dataclass(frozen=True)
class Window:
    """Stretches of the file (sample ranges, in order) read as one window of audio, and
    the speech the detector found in them."""

    pieces: tuple[tuple[int, int], ...]
    speech: tuple[tuple[int, int], ...]  # unpadded speech regions, file samples

    @property
    def start(self) -> int:
        return self.pieces[0][0]

    @property
    def end(self) -> int:
        return self.pieces[-1][1]

    @property
    def samples(self) -> int:
        return sum(end - start for start, end in self.pieces)

    def audio(self, audio: np.ndarray) -> np.ndarray:
        return np.concatenate([audio[start:end] for start, end in self.pieces])

    def file_time(self, seconds: float) -> float:
        """A time of the window's audio (seconds from its start) in the file's time."""
        sample, offset = seconds * SAMPLE_RATE, 0
        for start, end in self.pieces:
            if sample <= offset + end - start:
                return (start + max(sample - offset, 0)) / SAMPLE_RATE
            offset += end - start
        return self.end / SAMPLE_RATE

    def to_file(self, segment: Segment) -> Segment:
        return segment.retimed(self.file_time)

    def span_in_file_time(self) -> tuple[float, float]:
        return self.start / SAMPLE_RATE, self.end / SAMPLE_RATE

    def speech_in_file_time(self) -> list[tuple[float, float]]:
        return [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in self.speech]

    def offset_of(self, seconds: float) -> int:
        """The sample of the window's audio at file time `seconds` (a time between two
        pieces: where the later one starts)."""
        sample, done = round(seconds * SAMPLE_RATE), 0
        for start, end in self.pieces:
            if sample < end:
                return done + max(sample - start, 0)
            done += end - start
        return done

    def split_at(self, offset: int) -> tuple[Window, Window]:
        """The window's audio before `offset` (samples of its own audio) and from it on."""
        first: list[tuple[int, int]] = []
        second: list[tuple[int, int]] = []
        done = 0
        for start, end in self.pieces:
            if done + end - start <= offset:
                first.append((start, end))
            elif done >= offset:
                second.append((start, end))
            else:
                cut = start + offset - done
                first.append((start, cut))
                second.append((cut, end))
            done += end - start
        return _window(first, self.speech), _window(second, self.speech)


def _clip(regions: Sequence[tuple[int, int]], start: int, end: int) -> tuple[tuple[int, int], ...]:
    return tuple((max(a, start), min(b, end)) for a, b in regions if b > start and a < end)


def _quietest_sample(scores: np.ndarray, start: int, end: int) -> int:
    """The start of the frame with the lowest speech score between samples start and end."""
    first = -(-start // FRAME_SAMPLES)
    last = max(end // FRAME_SAMPLES, first + 1)
    frames = scores[first:last]
    if frames.size == 0:
        return (start + end) // 2
    return int(first + np.argmin(frames)) * FRAME_SAMPLES


def _last_pause_sample(scores: np.ndarray, start: int, end: int) -> int:
    """The middle of the last pause (frames scoring under `PAUSE_SCORE`) between samples start
    and end, so that both sides keep some of its quiet; the quietest frame if there is none."""
    first = -(-start // FRAME_SAMPLES)
    quiet = np.flatnonzero(scores[first : end // FRAME_SAMPLES] < PAUSE_SCORE)
    if quiet.size == 0:
        return _quietest_sample(scores, start, end)
    gaps = np.flatnonzero(np.diff(quiet) > 1)  # where one pause ends and another begins
    run_start = quiet[gaps[-1] + 1] if gaps.size else quiet[0]
    return int(first + (run_start + quiet[-1] + 1) // 2) * FRAME_SAMPLES


def split_long_regions(
    regions: Sequence[tuple[int, int]], scores: np.ndarray, limit: int
) -> list[tuple[int, int]]:
    """Regions no longer than `limit`: a longer one (sentences whose pauses are shorter than
    the detector's padding) is cut in the last pause of the last quarter of its first `limit`
    samples, and the rest is cut again as needed."""
    result: list[tuple[int, int]] = []
    for start, end in regions:
        while end - start > limit:
            cut = _last_pause_sample(scores, start + int(limit * CUT_FROM_FRACTION), start + limit)
            cut = min(max(cut, start + FRAME_SAMPLES), start + limit)
            result.append((start, cut))
            start = cut
        result.append((start, end))
    return result


def plan_windows(
    regions: Sequence[tuple[int, int]],
    speech: Sequence[tuple[int, int]],
    scores: np.ndarray,
    *,
    window: int,
    total: int,
) -> list[Window]:
    """Pack speech `regions` (padded, sorted sample ranges) into windows of at most `window`
    samples less `TAIL_SECONDS`; `speech` holds the unpadded regions, `scores` the detector's
    frame scores. A full window is cut at the longest pause in its last quarter (not after its
    last region that fits: that would cut a sentence's pause as readily as a speaker's)."""
    limit = window - int(TAIL_SECONDS * SAMPLE_RATE)
    groups: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for region in split_long_regions(regions, scores, limit - int(LEAD_SECONDS * SAMPLE_RATE)):
        current.append(region)
        while _length(current) > limit:
            cut = _best_cut(current, limit)
            groups.append(current[:cut])
            current = current[cut:]
    if current:
        groups.append(current)
    windows, previous_end = [], 0
    for group in groups:
        pieces = _pieces(group, previous_end)
        windows.append(Window(pieces, _clip(speech, pieces[0][0], min(pieces[-1][1], total))))
        previous_end = group[-1][1]
    return windows


def _pieces(group: Sequence[tuple[int, int]], previous_end: int) -> tuple[tuple[int, int], ...]:
    """The audio a window reads for its regions: up to `LEAD_SECONDS` of lead-in (never
    before the previous window's speech), pauses up to `MAX_GAP_SECONDS` whole, longer ones
    shortened to it (half kept after the speech before, half before the speech after)."""
    lead, max_gap = int(LEAD_SECONDS * SAMPLE_RATE), int(MAX_GAP_SECONDS * SAMPLE_RATE)
    pieces = [(max(group[0][0] - lead, previous_end, 0), group[0][1])]
    for start, end in group[1:]:
        if start - pieces[-1][1] <= max_gap:
            pieces[-1] = (pieces[-1][0], end)
        else:
            half = max_gap // 2
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + half)
            pieces.append((start - (max_gap - half), end))
    return tuple(pieces)


def _length(group: Sequence[tuple[int, int]]) -> int:
    return sum(end - start for start, end in _pieces(group, 0))


def _best_cut(group: Sequence[tuple[int, int]], limit: int) -> int:
    """Where to cut `group` (a window's regions and the one that overflowed it): before the
    region that follows the longest pause, among the cuts that leave the window at least
    `CUT_FROM_FRACTION` full (the fullest that fits, if none does); ties go to the later cut."""
    cuts = [k for k in range(1, len(group)) if _length(group[:k]) <= limit]
    full_enough = [k for k in cuts if _length(group[:k]) >= limit * CUT_FROM_FRACTION] or cuts[-1:]
    return max(full_enough, key=lambda k: (group[k][0] - group[k - 1][1], k))


def split_window(window: Window, scores: np.ndarray) -> tuple[Window, Window] | None:
    """A window cut in two at its longest pause near the middle (between pieces, or its
    quietest frame); None when a half would be shorter than `MIN_REREAD_SECONDS`."""
    minimum = int(MIN_REREAD_SECONDS * SAMPLE_RATE)
    if window.samples < 2 * minimum:
        return None
    if len(window.pieces) > 1:
        # between pieces: the shortened silences, i.e. the longest pauses
        offsets = np.cumsum([end - start for start, end in window.pieces])[:-1]
        balanced = [
            i for i, offset in enumerate(offsets) if minimum <= offset <= window.samples - minimum
        ]
        if balanced:
            middle = min(balanced, key=lambda i: abs(offsets[i] - window.samples / 2))
            return window.split_at(int(offsets[middle]))
    # inside a piece: at the quietest frame of the middle half of the window's audio
    return window.split_at(_offset_of_quietest(window, scores, minimum))


def unfinished_rest(
    segments: Sequence[Segment], window: Window, ended_before: float | None = None
) -> tuple[Window, Window] | None:
    """Where the decode of a window (`segments` in file time) stopped before its speech did:
    the window before its last segment, whose other segments are final, and the rest, to
    read again from that segment's start (as `transcribe()` seeks to the last timestamp).
    Either the decode stopped inside its last segment (no closing timestamp), or the
    detector hears at least `MISSED_AT_END_SECONDS` of speech after the last segment ends:
    Whisper does both at the end of a window, and whole sentences went missing ("She called"
    for "She called his name many times."; read again from the segment's end, the rest lost
    "his", which the closing timestamp had cut into). None when there is nothing to read
    again or less than `MIN_UNFINISHED_SECONDS` either side, or when `window` is itself such
    a rest and its closed last segment ends where the read before closed its own
    (`ended_before`, file time): the model heard no more there."""
    if not segments:
        return None
    last = segments[-1]
    if last.complete:
        if ended_before is not None and abs(last.end - ended_before) <= SAME_END_SECONDS:
            return None
        after = sum(max(0.0, b - max(a, last.end)) for a, b in window.speech_in_file_time())
        if after < MISSED_AT_END_SECONDS:
            return None
    cut = window.offset_of(last.start)
    minimum = int(MIN_UNFINISHED_SECONDS * SAMPLE_RATE)
    if cut < minimum or window.samples - cut < minimum:
        return None  # no progress, or too little left to read
    return window.split_at(cut)


def _offset_of_quietest(window: Window, scores: np.ndarray, minimum: int) -> int:
    """Offset in the window's audio of its quietest frame at least `minimum` from each end."""
    best, best_score, offset = window.samples // 2, np.inf, 0
    for start, end in window.pieces:
        low = start + max(minimum - offset, 0)
        high = start + min(window.samples - minimum - offset, end - start)
        if low < high:
            sample = _quietest_sample(scores, low, high)
            frame = sample // FRAME_SAMPLES
            score = scores[frame] if frame < scores.size else np.inf
            if score < best_score:
                best, best_score = offset + sample - start, score
        offset += end - start
    return best


def _window(pieces: Sequence[tuple[int, int]], speech: Sequence[tuple[int, int]]) -> Window:
    return Window(tuple(pieces), _clip(speech, pieces[0][0], pieces[-1][1]))


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _covered(intervals: Sequence[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)


def window_problems(segments: Sequence[Segment], window: Window, prompt: str | None) -> list[str]:
    """What is wrong with a window's segments (file time), in words for the log; [] if none."""
    problems: list[str] = []
    speech = window.speech_in_file_time()
    words = _words(" ".join(segment.text for segment in segments))
    # the whole window, then each segment ("C" for 10 s of speech holding four sentences)
    spans = [(words, *window.span_in_file_time())]
    if len(segments) > 1:
        spans += [(_words(segment.text), segment.start, segment.end) for segment in segments]
    for text, start, end in spans:
        speech_seconds = _covered(speech, start, end)
        if speech_seconds >= CHECKED_SPEECH_SECONDS and (
            len(text) < MIN_WORDS_PER_SPEECH_SECOND * speech_seconds
        ):
            problems.append(
                f"{len(text)} words for {speech_seconds:.1f} s of speech at {start:.1f}-{end:.1f} s"
            )
    heard = [
        (segment.start - SEGMENT_SLACK_SECONDS, segment.end + SEGMENT_SLACK_SECONDS)
        for segment in segments
        if _words(segment.text)
    ]
    unheard = [(a, b) for a, b in speech if b - a - _covered(heard, a, b) >= UNHEARD_SPEECH_SECONDS]
    if unheard:
        where = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in unheard)
        problems.append(f"speech without words at {where}")
    sentences = [
        " ".join(_words(sentence))
        for segment in segments
        for sentence in re.split(r"(?<=[.!?])\s+", segment.text)
    ]
    long_sentences = [s for s in sentences if len(s.split()) >= MIN_REPEATED_WORDS]
    if len(set(long_sentences)) < len(long_sentences):
        problems.append("a sentence written twice")
    prompt_words = " ".join(_words(prompt or ""))
    if len(prompt_words.split()) >= MIN_REPEATED_WORDS and prompt_words in " ".join(words):
        problems.append("the prompt written out")
    if any(segment.compression_ratio > MAX_COMPRESSION_RATIO for segment in segments):
        problems.append("repetitive at every temperature")
    return problems
