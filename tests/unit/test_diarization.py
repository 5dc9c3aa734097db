"""Clustering speaker embeddings without a known count, and speaker labels on segments."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.diarization import SpeakerWindow, cluster, label_segments
from gateway.core.transcript import Segment, Word


def voices(*counts: int, spread: float = 0.25, seed: int = 0) -> np.ndarray:
    """`counts[i]` noisy embeddings around voice i's direction, voice by voice, L2-normalised."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((64, len(counts))))[0].T  # orthogonal voices
    rows = [
        centre + spread * rng.standard_normal((count, 64)) / 8
        for centre, count in zip(centres, counts, strict=True)
    ]
    embeddings = np.concatenate(rows)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def test_the_count_of_speakers_is_found() -> None:
    for counts in [(12,), (10, 7), (6, 9, 5), (4, 4, 4, 4)]:
        labels = cluster(voices(*counts))
        expected = np.repeat(np.arange(len(counts)), counts)
        assert labels.tolist() == expected.tolist(), counts


def test_labels_are_numbered_by_first_appearance() -> None:
    embeddings = voices(3, 3)
    order = [3, 4, 0, 1, 5, 2]
    assert cluster(embeddings[order]).tolist() == [0, 0, 1, 1, 0, 1]


def test_min_and_max_speakers_bound_the_count() -> None:
    assert len(set(cluster(voices(5, 5, 5), max_speakers=2).tolist())) == 2
    assert len(set(cluster(voices(15), min_speakers=2).tolist())) == 2
    assert len(set(cluster(voices(5, 5, 5), min_speakers=3, max_speakers=3).tolist())) == 3


def test_nothing_to_cluster_and_bad_bounds() -> None:
    assert cluster(np.zeros((0, 256))).size == 0
    assert cluster(voices(1)).tolist() == [0]
    with pytest.raises(ValueError, match="min_speakers"):
        cluster(voices(3), min_speakers=3, max_speakers=2)


def words(*spans: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(text, start, end, 0.9) for text, start, end in spans)


def segment(spoken: tuple[Word, ...], text: str | None = None) -> Segment:
    return Segment(
        start=spoken[0].start if spoken else 0.0,
        end=spoken[-1].end if spoken else 1.0,
        text="".join(word.word for word in spoken) if text is None else text,
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        compression_ratio=1.2,
        temperature=0.0,
        words=spoken,
    )


WINDOWS = [SpeakerWindow(start, start + 1.6, np.zeros(2)) for start in (0.0, 0.77, 1.54, 2.31)]
LABELS = np.array([0, 0, 1, 1])  # A until about 2 s, then B


def test_a_segment_is_split_where_the_speaker_changes_and_words_keep_their_times() -> None:
    spoken = words(
        (" Hello", 0.1, 0.5), (" there.", 0.6, 1.0), (" Hi", 2.9, 3.2), (" you.", 3.3, 3.6)
    )
    labelled = label_segments([segment(spoken)], WINDOWS, LABELS)
    assert [(item.speaker, item.segment.text) for item in labelled] == [
        ("A", " Hello there."),
        ("B", " Hi you."),
    ]
    assert labelled[0].segment.words == spoken[:2] and labelled[1].segment.words == spoken[2:]
    assert (labelled[0].segment.start, labelled[1].segment.start) == (0.1, 2.9)
    assert "".join(item.segment.text for item in labelled) == segment(spoken).text


def test_a_segment_of_one_speaker_stays_whole() -> None:
    spoken = words((" One", 2.9, 3.1), (" voice.", 3.2, 3.6))
    (item,) = label_segments([segment(spoken)], WINDOWS, LABELS)
    assert item.speaker == "B" and item.segment == segment(spoken)


def test_a_segment_whose_words_do_not_spell_it_is_not_split() -> None:
    spoken = words((" Hello", 0.1, 0.5), (" you.", 3.3, 3.6))
    (item,) = label_segments([segment(spoken, " Hello, you.")], WINDOWS, LABELS)
    assert item.segment.text == " Hello, you."
    assert item.speaker == "A"  # its middle, 1.85 s, is nearest the second window's (1.57 s)


def test_without_windows_everyone_is_one_speaker() -> None:
    spoken = words((" Hello", 0.1, 0.5))
    (item,) = label_segments([segment(spoken)], [], np.zeros(0, dtype=np.int64))
    assert item.speaker == "A"
