"""Who spoke when, from speaker embeddings: clustering, speaker turns, labels on a transcript.

The speaker model (Triton's `speaker`) gives one embedding per window of speech (1.6 s, one
every 0.77 s); `cluster` groups them by voice without being told how many voices there are,
and `merge_small_clusters` folds a few stray windows back into the voice they resemble.
`speaker_turns` cuts the voice detector's speech regions where the windows' speaker changes,
and `label_segments` gives each word the turn it lies in and splits a segment between turns,
so each piece spans one speaker's speech, not the pauses Whisper's segments run across. Words
keep their timestamps and the text is never changed: a segment is the concatenation of its
words' text, or it is not split. numpy only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gateway.core.transcript import Segment, Word

# Average-linkage clusters whose windows are less alike than this (cosine similarity of the
# served voice encoder's 1.6 s windows, averaged over every pair) are different speakers.
# Tuned on the test clips (docs/design.md, "Diarization"): one person's windows stay together
# from 0.60 to 0.65 down (JFK, the Harvard reader), two people split from 0.50 (JFK and the
# reader) or only from 0.60 (the stereo clip's two, whose whole utterances are 0.68 alike).
# On composites the benchmark does not score (`python -m benchmarks.diarization_tuning`),
# 0.65 to 0.70 told every voice apart, but split JFK in two on composites of his whole clip
# again and again; at 0.60 two of its espeak-ng voices (en-us+m7, en-us+david) are one.
SAME_SPEAKER_SIMILARITY = 0.6
# A cluster of fewer windows than this (about 4 s of speech) is a few stray windows more
# often than a person (the end of JFK's clip, "... for your country", clustered apart); it
# joins the cluster whose centroid it is at least this alike to (a single window joins the
# nearest at any similarity). The stereo clip's second person, 2 windows, is 0.65 alike to the
# first's centroid; JFK's stray windows 0.73 to his. Chosen on composites the benchmark does not
# score (benchmarks/README.md, "Who spoke when"): 5 to 8 windows and 0.7 to 0.72 did best there.
SMALL_CLUSTER_WINDOWS = 5
SMALL_CLUSTER_SIMILARITY = 0.7
MAX_SPEAKERS = 26  # the labels are letters, as OpenAI's: A, B, ...
# A window over less speech than this (a short region: "ask not", 0.4 s; the tail of a longer
# one) says too little about a voice to found a speaker: it joins the speaker whose centroid
# it is most alike to. Two such windows of JFK's (0.7 and 0.4 s of speech) were a speaker
# of their own in the benchmark's short turns, 0.63 alike to the other reader and 0.54 to him.
MIN_FOUNDING_SECONDS = 1.0


@dataclass(frozen=True)
class SpeakerWindow:
    """One embedding of the speaker model and the span of audio it describes (file time)."""

    start: float
    end: float
    embedding: np.ndarray  # L2-normalised


@dataclass(frozen=True)
class SpeakerTurn:
    """A stretch of speech (file time) without a pause, spoken by cluster `speaker`."""

    speaker: int
    start: float
    end: float


@dataclass(frozen=True)
class SpeakerSegment:
    """A piece of the transcript spoken by one speaker."""

    speaker: str
    segment: Segment

    def to_json(self, index: int) -> dict[str, object]:
        return {"speaker": self.speaker, **self.segment.to_json(index)}


def cluster(
    embeddings: np.ndarray,
    *,
    threshold: float = SAME_SPEAKER_SIMILARITY,
    min_speakers: int = 1,
    max_speakers: int = MAX_SPEAKERS,
) -> np.ndarray:
    """A cluster index per row of `embeddings` (L2-normalised, [n, d]), numbered in order of
    first appearance: agglomerative, average linkage on cosine similarity, merging while the
    two most alike clusters are at least `threshold` alike, and also beyond it while there
    are more than `max_speakers`, but never below `min_speakers`."""
    count = len(embeddings)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if not 1 <= min_speakers <= max_speakers:
        raise ValueError(
            f"need 1 <= min_speakers <= max_speakers, got {min_speakers}, {max_speakers}"
        )
    vectors = np.asarray(embeddings, dtype=np.float64)
    # Between clusters, the sum of every pair's similarity is the dot product of their sums:
    # merging two clusters adds their rows and columns.
    pair_sums = vectors @ vectors.T
    sizes = np.ones(count)
    alive = np.ones(count, dtype=bool)
    average = pair_sums.copy()  # average similarity between clusters; -inf: no such pair
    np.fill_diagonal(average, -np.inf)
    members = np.arange(count)
    clusters = count
    while clusters > min_speakers:
        first, second = np.unravel_index(int(np.argmax(average)), average.shape)
        if average[first, second] < threshold and clusters <= max_speakers:
            break
        pair_sums[first, :] += pair_sums[second, :]
        pair_sums[:, first] += pair_sums[:, second]
        sizes[first] += sizes[second]
        alive[second] = False
        members[members == second] = first
        clusters -= 1
        average[second, :] = average[:, second] = -np.inf
        row = pair_sums[first, :] / (sizes[first] * sizes)
        row[~alive] = -np.inf
        row[first] = -np.inf
        average[first, :] = average[:, first] = row
    return _by_first_appearance(members)


def cluster_windows(
    windows: Sequence[SpeakerWindow],
    *,
    min_speakers: int = 1,
    max_speakers: int = MAX_SPEAKERS,
) -> np.ndarray:
    """A speaker index per window, in order of first appearance: the windows over at least
    `MIN_FOUNDING_SECONDS` of speech clustered (`cluster`, then `merge_small_clusters`), each
    shorter one given the speaker whose centroid it is most alike to. All windows are
    clustered when too few are that long to found `min_speakers`."""
    if not windows:
        return np.zeros(0, dtype=np.int64)
    embeddings = np.array([window.embedding for window in windows]).reshape(len(windows), -1)
    founding = np.array([window.end - window.start >= MIN_FOUNDING_SECONDS for window in windows])
    if founding.sum() < min_speakers or not founding.any():
        founding[:] = True
    min_speakers = min(min_speakers, int(founding.sum()))
    found = embeddings[founding]
    founded = merge_small_clusters(
        found,
        cluster(found, min_speakers=min_speakers, max_speakers=max_speakers),
        min_speakers=min_speakers,
    )
    labels = np.zeros(len(windows), dtype=np.int64)
    labels[founding] = founded
    if not founding.all():
        speakers = np.unique(founded)
        centroids = np.array([mean_direction(found[founded == k]) for k in speakers])
        labels[~founding] = speakers[np.argmax(embeddings[~founding] @ centroids.T, axis=1)]
    return _by_first_appearance(labels)


def _by_first_appearance(labels: np.ndarray) -> np.ndarray:
    _, first_seen, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first_seen))[inverse]


def merge_small_clusters(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    min_windows: int = SMALL_CLUSTER_WINDOWS,
    similarity: float = SMALL_CLUSTER_SIMILARITY,
    min_speakers: int = 1,
) -> np.ndarray:
    """`labels` with each cluster of fewer than `min_windows` windows merged into the cluster
    whose centroid is most alike to its own, when at least `similarity` alike (a cluster of
    one window at any similarity: 1.6 s says too little about a voice), the most alike pair
    first, never below `min_speakers`; renumbered by first appearance."""
    labels = labels.copy()
    while len(clusters := np.unique(labels)) > min_speakers:
        centroids = np.array([mean_direction(embeddings[labels == k]) for k in clusters])
        alike = centroids @ centroids.T
        np.fill_diagonal(alike, -np.inf)
        sizes = np.bincount(labels)[clusters]
        alike[sizes >= min_windows, :] = -np.inf  # only a small cluster (a row) is merged away
        alike[sizes == 1, :] += 2.0  # above any similarity: a single window always goes
        row, column = np.unravel_index(int(np.argmax(alike)), alike.shape)
        if alike[row, column] < similarity:
            break
        labels[labels == clusters[row]] = clusters[column]
    return _by_first_appearance(labels)


def speaker_turns(
    regions: Sequence[tuple[float, float]],
    windows: Sequence[SpeakerWindow],
    labels: np.ndarray,
) -> list[SpeakerTurn]:
    """The speech `regions` (file time, sorted) cut where the speaker changes: between two
    windows of different speakers whose middles lie in one region, halfway between those
    middles. A region with no window's middle in it takes the speaker of the nearest window."""
    if not windows:
        return []
    middles = np.array([(window.start + window.end) / 2 for window in windows])
    turns: list[SpeakerTurn] = []
    for start, end in regions:
        inside = np.flatnonzero((middles >= start) & (middles <= end))
        if inside.size == 0:
            nearest = int(np.argmin(np.abs(middles - (start + end) / 2)))
            turns.append(SpeakerTurn(int(labels[nearest]), start, end))
            continue
        begin = start
        for before, after in zip(inside, inside[1:], strict=False):
            if labels[before] != labels[after]:
                cut = float(middles[before] + middles[after]) / 2
                turns.append(SpeakerTurn(int(labels[before]), begin, cut))
                begin = cut
        turns.append(SpeakerTurn(int(labels[inside[-1]]), begin, end))
    return turns


def speaker_name(index: int) -> str:
    return string.ascii_uppercase[index]


def mean_direction(embeddings: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of L2-normalised embeddings: a voice's centroid."""
    mean = np.asarray(embeddings, dtype=np.float64).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def speaker_names(
    embeddings: np.ndarray,
    labels: np.ndarray,
    known: Sequence[tuple[str, np.ndarray]] = (),
    *,
    threshold: float = SAME_SPEAKER_SIMILARITY,
) -> list[str]:
    """A name per cluster: a known speaker's (name, reference embedding) where the cluster's
    centroid is at least `threshold` alike to it, each name given once, most alike pairs
    first; the other clusters `A`, `B`, ... in order of first appearance."""
    count = int(labels.max()) + 1 if labels.size else 0
    names: list[str | None] = [None] * count
    if known and count:
        centroids = np.array([mean_direction(embeddings[labels == k]) for k in range(count)])
        similarity = centroids @ np.array([reference for _, reference in known]).T
        for flat in np.argsort(similarity, axis=None)[::-1]:
            cluster_index, reference_index = map(int, np.unravel_index(flat, similarity.shape))
            name = known[reference_index][0]
            if similarity[cluster_index, reference_index] < threshold:
                break
            if names[cluster_index] is None and name not in names:
                names[cluster_index] = name
    letters = iter(string.ascii_uppercase)
    return [name if name is not None else next(letters) for name in names]


def _turn_at(start: float, end: float, turns: Sequence[SpeakerTurn]) -> int:
    """The index of the turn overlapping `start`-`end` the most; if none does, the nearest."""
    overlap = [min(end, turn.end) - max(start, turn.start) for turn in turns]
    best = int(np.argmax(overlap))
    if overlap[best] > 0:
        return best
    return int(np.argmin([max(turn.start - end, start - turn.end) for turn in turns]))


def _spanning(segment: Segment, turn: SpeakerTurn, first: bool, last: bool) -> Segment:
    """`segment` spanning its part of `turn`'s speech: from the turn's start when it is the
    turn's first piece, to its end when the last (Whisper's times run into the pauses around
    speech, and leave gaps between segments inside it); otherwise its own times within the
    turn. The words keep theirs."""
    start = turn.start if first else min(max(segment.start, turn.start), segment.end)
    end = turn.end if last else min(segment.end, turn.end)
    return replace(segment, start=start, end=max(end, start))


def _piece(segment: Segment, words: list[Word]) -> Segment:
    """The part of `segment` its `words` speak (its tokens are not split: left out)."""
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text="".join(word.word for word in words),
        avg_logprob=segment.avg_logprob,
        no_speech_prob=segment.no_speech_prob,
        compression_ratio=segment.compression_ratio,
        temperature=segment.temperature,
        words=tuple(words),
    )


def label_segments(
    segments: Sequence[Segment],
    turns: Sequence[SpeakerTurn],
    names: Sequence[str] | None = None,
) -> list[SpeakerSegment]:
    """Each segment with its speaker (cluster k named `names[k]`; default `A`, `B`, ...),
    split between words that lie in different turns, the pieces of a turn spanning its speech
    (the words' own timestamps kept); a segment without words, or whose words do not spell
    its text, takes the speaker of the turn nearest its middle, unsplit, its times its own."""
    if names is None:
        names = [
            speaker_name(index) for index in range(max((t.speaker for t in turns), default=0) + 1)
        ]
    if not turns:
        return [SpeakerSegment(speaker_name(0), segment) for segment in segments]
    placed: list[tuple[int | None, Segment]] = []  # the turn of each piece (None: unsplit)
    for segment in segments:
        words = segment.words
        if not words or "".join(word.word for word in words) != segment.text:
            placed.append((None, segment))
            continue
        runs: list[tuple[int, list[Word]]] = []
        for word in words:
            index = _turn_at(word.start, word.end, turns)
            if runs and runs[-1][0] == index:
                runs[-1][1].append(word)
            else:
                runs.append((index, [word]))
        placed += [
            (index, segment if len(runs) == 1 else _piece(segment, run)) for index, run in runs
        ]
    labelled: list[SpeakerSegment] = []
    for at, (turn_index, piece) in enumerate(placed):
        if turn_index is None:  # it may run across turns: its own times
            middle = (piece.start + piece.end) / 2
            turn = turns[_turn_at(middle, middle, turns)]
        else:
            turn = turns[turn_index]
            first = at == 0 or placed[at - 1][0] != turn_index
            last = at == len(placed) - 1 or placed[at + 1][0] != turn_index
            piece = _spanning(piece, turn, first, last)
        if labelled and piece.start < (floor := labelled[-1].segment.end):
            # beside an unsplit segment's own times: never overlap
            piece = replace(piece, start=min(floor, piece.end))
        labelled.append(SpeakerSegment(names[turn.speaker], piece))
    return labelled
