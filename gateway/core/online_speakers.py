"""Speakers of a live stream, told apart as its finals come (online clustering).

A file is clustered once every window is known (`gateway.core.diarization.cluster`); a live
stream must name the speaker of each final when it is sent, and never rename it later. Each
final's embeddings (its windows, from the speaker model) are compared, as their mean
direction, with the centroid of every speaker heard so far: the most alike speaker takes it
when at least `LIVE_SAME_SPEAKER_SIMILARITY` alike, and its centroid moves towards the final;
otherwise the final opens a new speaker. A final shorter than one window says too little about
a voice to open one: it goes to the most alike speaker, without moving that centroid.
numpy only.
"""

from __future__ import annotations

import numpy as np

from gateway.core.diarization import MAX_SPEAKERS, mean_direction, speaker_name

# The mean direction of one stretch of speech against the centroid of a speaker's earlier
# windows (the test clips' real voices): the same person 0.72 to 0.99 but for one-window
# stretches (down to 0.48), different people at most 0.65 (docs/design.md, "Diarization").
LIVE_SAME_SPEAKER_SIMILARITY = 0.7
MIN_NEW_SPEAKER_SECONDS = 1.6  # one window of the speaker model


class OnlineSpeakers:
    """The speakers of one stream so far, named `A`, `B`, ... in order of first appearance."""

    def __init__(
        self,
        *,
        threshold: float = LIVE_SAME_SPEAKER_SIMILARITY,
        min_new_seconds: float = MIN_NEW_SPEAKER_SECONDS,
        max_speakers: int = MAX_SPEAKERS,
    ) -> None:
        self.threshold = threshold
        self.min_new_seconds = min_new_seconds
        self.max_speakers = max_speakers
        self._sums: list[np.ndarray] = []  # each speaker's windows, summed

    @property
    def count(self) -> int:
        return len(self._sums)

    def assign(self, embeddings: np.ndarray, seconds: float) -> str:
        """The speaker of a final: `embeddings` (L2-normalised, [n, d]) of its `seconds` of
        audio."""
        direction = mean_direction(embeddings)
        if self._sums:
            centroids = np.array([mean_direction(total[None]) for total in self._sums])
            alike = centroids @ direction
            best = int(np.argmax(alike))
            if alike[best] >= self.threshold:
                self._sums[best] = self._sums[best] + embeddings.sum(axis=0)
                return speaker_name(best)
            if seconds < self.min_new_seconds or self.count >= self.max_speakers:
                return speaker_name(best)
        self._sums.append(np.asarray(embeddings, dtype=np.float64).sum(axis=0))
        return speaker_name(self.count - 1)
