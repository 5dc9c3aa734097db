"""Who spoke when, from speaker embeddings: clustering, and speaker labels on a transcript.

The speaker model (Triton's `speaker`) gives one embedding per window of speech (1.6 s, one
every 0.77 s); `cluster` groups them by voice without being told how many voices there are,
and `label_segments` gives each word the speaker of the window nearest to it and splits a
segment where the speaker changes. Words keep their timestamps and the text is never changed:
a segment is the concatenation of its words' text, or it is not split. numpy only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.core.transcript import Segment, Word

# Average-linkage clusters whose windows are less alike than this (cosine similarity of the
# served voice encoder's 1.6 s windows, averaged over every pair) are different speakers.
# Tuned on the test clips (docs/design.md, "Diarization"): one person's windows stay together
# from 0.60 to 0.65 down (JFK, the Harvard reader), two people split from 0.50 (JFK and the
# reader) or only from 0.60 (the stereo clip's two, whose whole utterances are 0.68 alike).
SAME_SPEAKER_SIMILARITY = 0.6
MAX_SPEAKERS = 26  # the labels are letters, as OpenAI's: A, B, ...


@dataclass(frozen=True)
class SpeakerWindow:
    """One embedding of the speaker model and the span of audio it describes (file time)."""

    start: float
    end: float
    embedding: np.ndarray  # L2-normalised


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
    _, first_seen, labels = np.unique(members, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_seen))  # cluster numbers by first appearance
    return order[labels]


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
            cluster_index, reference_index = np.unravel_index(int(flat), similarity.shape)
            name = known[reference_index][0]
            if similarity[cluster_index, reference_index] < threshold:
                break
            if names[cluster_index] is None and name not in names:
                names[cluster_index] = name
    letters = iter(string.ascii_uppercase)
    return [name if name is not None else next(letters) for name in names]


def _speaker_at(time: float, windows: Sequence[SpeakerWindow], labels: np.ndarray) -> int:
    """The label of the window whose middle is nearest to `time`."""
    middles = np.array([(window.start + window.end) / 2 for window in windows])
    return int(labels[int(np.argmin(np.abs(middles - time)))])


def label_segments(
    segments: Sequence[Segment],
    windows: Sequence[SpeakerWindow],
    labels: np.ndarray,
    names: Sequence[str] | None = None,
) -> list[SpeakerSegment]:
    """Each segment with its speaker (cluster k named `names[k]`; default `A`, `B`, ...),
    split between words where the speaker changes (the words' own timestamps kept); a segment
    without words, or whose words do not spell its text, keeps its speaker at its middle,
    unsplit."""
    if names is None:
        names = [
            speaker_name(index) for index in range(int(labels.max()) + 1 if labels.size else 0)
        ]
    if not windows:
        return [
            SpeakerSegment(names[0] if names else speaker_name(0), segment) for segment in segments
        ]
    labelled: list[SpeakerSegment] = []
    for segment in segments:
        words = segment.words
        if not words or "".join(word.word for word in words) != segment.text:
            speaker = _speaker_at((segment.start + segment.end) / 2, windows, labels)
            labelled.append(SpeakerSegment(names[speaker], segment))
            continue
        runs: list[tuple[int, list[Word]]] = []
        for word in words:
            speaker = _speaker_at((word.start + word.end) / 2, windows, labels)
            if runs and runs[-1][0] == speaker:
                runs[-1][1].append(word)
            else:
                runs.append((speaker, [word]))
        if len(runs) == 1:
            labelled.append(SpeakerSegment(names[runs[0][0]], segment))
            continue
        for index, (speaker, run) in enumerate(runs):
            start = segment.start if index == 0 else run[0].start
            end = segment.end if index == len(runs) - 1 else run[-1].end
            piece = Segment(
                start=start,
                end=end,
                text="".join(word.word for word in run),
                avg_logprob=segment.avg_logprob,
                no_speech_prob=segment.no_speech_prob,
                compression_ratio=segment.compression_ratio,
                temperature=segment.temperature,
                words=tuple(run),
            )
            labelled.append(SpeakerSegment(names[speaker], piece))
    return labelled
