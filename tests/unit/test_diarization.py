"""Clustering speaker embeddings without a known count, speaker turns, and speaker labels on
segments."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gateway.core.diarization import (
    SpeakerTurn,
    SpeakerWindow,
    cluster,
    cluster_windows,
    label_segments,
    merge_small_clusters,
    speaker_turns,
)
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


def test_a_few_stray_windows_join_the_voice_they_resemble() -> None:
    embeddings = voices(8, 8)
    stray = embeddings[:2] * 0.9 + embeddings[8:10] * 0.3  # mostly the first voice
    stray /= np.linalg.norm(stray, axis=1, keepdims=True)
    both = np.concatenate([embeddings, stray])
    labels = np.array([0] * 8 + [1] * 8 + [2, 2])
    assert merge_small_clusters(both, labels).tolist() == [0] * 8 + [1] * 8 + [0, 0]


def test_a_small_cluster_of_a_different_voice_stays() -> None:
    embeddings = voices(8, 2)
    labels = np.array([0] * 8 + [1] * 2)
    assert merge_small_clusters(embeddings, labels).tolist() == labels.tolist()
    assert merge_small_clusters(embeddings, labels, similarity=-1.0).tolist() == [0] * 10
    assert merge_small_clusters(embeddings, labels, similarity=-1.0, min_speakers=2).tolist() == (
        labels.tolist()
    )


def test_a_single_window_is_never_a_speaker_of_its_own() -> None:
    embeddings = voices(8, 1)  # the second voice only 1.6 s long: too little to tell
    labels = np.array([0] * 8 + [1])
    assert merge_small_clusters(embeddings, labels).tolist() == [0] * 9


WINDOWS = [SpeakerWindow(start, start + 1.6, np.zeros(2)) for start in (0.0, 0.77, 1.54, 2.31)]
LABELS = np.array([0, 0, 1, 1])  # A until about 2 s, then B


def test_turns_are_speech_regions_cut_where_the_speaker_changes() -> None:
    # window middles 0.8, 1.57, 2.34, 3.11: the change is halfway between 1.57 and 2.34
    turns = speaker_turns([(0.1, 3.6), (5.0, 5.3)], WINDOWS, LABELS)
    assert turns == [
        SpeakerTurn(0, 0.1, 1.955),
        SpeakerTurn(1, 1.955, 3.6),
        SpeakerTurn(1, 5.0, 5.3),  # no window in it: the nearest window's speaker
    ]
    assert speaker_turns([(0.0, 1.0)], [], np.zeros(0, dtype=np.int64)) == []


TURNS = [SpeakerTurn(0, 0.1, 1.2), SpeakerTurn(0, 1.6, 2.0), SpeakerTurn(1, 2.8, 3.6)]


def test_a_segment_is_split_where_the_speaker_changes_and_words_keep_their_times() -> None:
    spoken = words(
        (" Hello", 0.1, 0.5), (" there.", 0.6, 1.0), (" Hi", 2.9, 3.2), (" you.", 3.3, 3.6)
    )
    labelled = label_segments([segment(spoken)], TURNS)
    assert [(item.speaker, item.segment.text) for item in labelled] == [
        ("A", " Hello there."),
        ("B", " Hi you."),
    ]
    assert labelled[0].segment.words == spoken[:2] and labelled[1].segment.words == spoken[2:]
    # each piece spans its turn's speech, not Whisper's times: 0.1-1.2 and 2.8-3.6
    assert [(item.segment.start, item.segment.end) for item in labelled] == [(0.1, 1.2), (2.8, 3.6)]
    assert "".join(item.segment.text for item in labelled) == segment(spoken).text


def test_a_segment_is_split_at_a_pause_its_pieces_span_only_speech() -> None:
    """Whisper stretches a word over the pause after it (" said" to 1.9 s); the piece ends
    where the speech does."""
    spoken = words((" He", 0.1, 0.4), (" said", 0.5, 1.9), (" so.", 1.9, 2.0))
    labelled = label_segments([segment(spoken)], TURNS)
    assert [(item.speaker, item.segment.text) for item in labelled] == [
        ("A", " He said"),
        ("A", " so."),
    ]
    assert [(item.segment.start, item.segment.end) for item in labelled] == [(0.1, 1.2), (1.6, 2.0)]
    assert labelled[0].segment.words == spoken[:2]


def test_a_segment_of_one_speaker_stays_whole() -> None:
    spoken = words((" One", 2.9, 3.1), (" voice.", 3.2, 3.5))
    (item,) = label_segments([segment(spoken)], TURNS)
    assert item.speaker == "B"
    assert item.segment == replace(segment(spoken), start=2.8, end=3.6)  # the turn's speech


def test_segments_of_one_turn_tile_its_speech() -> None:
    """Two segments inside one turn, with a gap between them in Whisper's times: the first
    starts with the turn's speech and ends where Whisper ends it, the second starts where
    Whisper starts it and ends with the turn's speech."""
    first, second = words((" One", 2.9, 3.0)), words((" two.", 3.2, 3.4))
    labelled = label_segments([segment(first), segment(second)], TURNS)
    assert [(item.segment.start, item.segment.end) for item in labelled] == [(2.8, 3.0), (3.2, 3.6)]


def test_a_segment_whose_words_do_not_spell_it_is_not_split() -> None:
    spoken = words((" Hello", 0.1, 0.5), (" you.", 3.3, 3.6))
    (item,) = label_segments([segment(spoken, " Hello, you.")], TURNS)
    assert item.segment.text == " Hello, you."
    assert item.speaker == "A"  # its middle, 1.85 s, lies in the second turn


def test_pieces_never_overlap_an_unsplit_segment() -> None:
    """An unsplit segment (its words do not spell it) keeps its own times, 1.0-1.4 s, but not
    where the piece before it, which ends with its turn at 1.2 s, already is."""
    before, after = words((" Hello", 0.1, 0.5)), words((" there.", 1.6, 1.9))
    odd = segment(words((" Hi", 1.0, 1.4)), " Hi!")
    labelled = label_segments([segment(before), odd, segment(after)], TURNS)
    spans = [(item.segment.start, item.segment.end) for item in labelled]
    assert spans == [(0.1, 1.2), (1.2, 1.4), (1.6, 2.0)]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_without_turns_everyone_is_one_speaker() -> None:
    spoken = words((" Hello", 0.1, 0.5))
    (item,) = label_segments([segment(spoken)], [])
    assert item.speaker == "A"


def spans(embeddings: np.ndarray, seconds: list[float]) -> list[SpeakerWindow]:
    """One window per embedding, 2 s apart, over `seconds` of speech each."""
    return [
        SpeakerWindow(2.0 * i, 2.0 * i + length, embedding)
        for i, (embedding, length) in enumerate(zip(embeddings, seconds, strict=True))
    ]


def test_windows_over_little_speech_join_a_speaker_rather_than_found_one() -> None:
    """Two windows of a third voice: over 1.6 s of speech each they are a speaker (a small
    cluster unlike the others stays); over 0.7 and 0.4 s (JFK's "ask not" between the other
    reader's sentences) each joins the speaker it is most alike to."""
    embeddings = voices(8, 8, 2)
    long = cluster_windows(spans(embeddings, [1.6] * 18))
    assert long.tolist() == [0] * 8 + [1] * 8 + [2, 2]
    short = cluster_windows(spans(embeddings, [1.6] * 16 + [0.7, 0.4]))
    assert short[:16].tolist() == [0] * 8 + [1] * 8
    first, second = (embeddings[:8].mean(axis=0), embeddings[8:16].mean(axis=0))
    nearest = [int(e @ second > e @ first) for e in embeddings[16:]]
    assert short[16:].tolist() == nearest


def test_windows_are_all_clustered_when_too_few_are_long() -> None:
    embeddings = voices(4, 4)
    assert cluster_windows(spans(embeddings, [0.5] * 8)).tolist() == [0] * 4 + [1] * 4
    one_long = spans(embeddings, [1.6] + [0.5] * 7)
    assert cluster_windows(one_long, min_speakers=2).tolist() == [0] * 4 + [1] * 4
    assert cluster_windows([]).size == 0
