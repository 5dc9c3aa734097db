"""LocalAgreement-2 on word hypotheses (pure)."""

from __future__ import annotations

from gateway.core.transcript import Word
from gateway.modes.agreement import COMMITTED_KEPT, LocalAgreement, before_decoding_loop


def words(text: str, start: float = 0.0, step: float = 0.5) -> list[Word]:
    return [
        Word(f" {w}", start + i * step, start + i * step + 0.4, 0.9)
        for i, w in enumerate(text.split())
    ]


def texts(items: list[Word]) -> str:
    return "".join(w.word for w in items).strip()


def test_nothing_is_committed_from_a_single_hypothesis() -> None:
    agreement = LocalAgreement()
    assert agreement.insert(words("and so my")) == []
    assert texts(agreement.tail) == "and so my"


def test_the_agreed_prefix_is_committed_once() -> None:
    agreement = LocalAgreement()
    agreement.insert(words("and so my fellow"))
    assert texts(agreement.insert(words("and so my fellow Americans ask"))) == "and so my fellow"
    assert texts(agreement.tail) == "Americans ask"
    # the next hypothesis repeats the committed words: only the new agreement is committed
    assert texts(agreement.insert(words("and so my fellow Americans ask not"))) == "Americans ask"
    assert texts(agreement.committed) == "and so my fellow Americans ask"


def test_disagreement_commits_nothing_and_replaces_the_tail() -> None:
    agreement = LocalAgreement()
    agreement.insert(words("a golden ring"))
    assert agreement.insert(words("a gold ring will")) == words("a")[:1]
    assert texts(agreement.tail) == "gold ring will"


def test_punctuation_and_case_do_not_break_agreement() -> None:
    agreement = LocalAgreement()
    agreement.insert(words("ask not what"))
    assert texts(agreement.insert(words("Ask not, what your"))) == "Ask not, what"


def test_a_trimmed_buffer_repeating_committed_words_is_not_committed_twice() -> None:
    agreement = LocalAgreement()
    agreement.insert(words("one two three"))
    agreement.insert(words("one two three four"))
    # after a trim with lead-in, the hypothesis starts with the last committed word again,
    # with timestamps that drifted a little earlier
    hypothesis = [Word(" three", 0.9, 1.3, 0.9), *words("four five", start=1.5)]
    assert texts(agreement.insert(hypothesis)) == "four"
    assert texts(agreement.committed) == "one two three four"


def test_flush_commits_the_rest() -> None:
    agreement = LocalAgreement()
    agreement.insert(words("when you hear"))
    agreement.insert(words("when you hear the bell"))
    assert texts(agreement.flush()) == "the bell"
    assert agreement.tail == [] and texts(agreement.committed) == "when you hear the bell"
    assert texts(agreement.flush(words("when you hear the bell come quickly"))) == "come quickly"


def test_commit_through_forces_the_words_whose_audio_is_dropped() -> None:
    agreement = LocalAgreement()
    agreement.insert(words("a gold ring will please"))  # nothing agreed yet
    assert texts(agreement.commit_through(1.45)) == "a gold ring"
    assert texts(agreement.tail) == "will please"
    assert texts(agreement.insert(words("a gold ring will please most"))) == "will please"


def test_the_committed_history_is_bounded() -> None:
    """A stream of hours commits words for hours: only the latest are kept, all are counted."""
    agreement = LocalAgreement()
    hypothesis = words(" ".join(f"w{i}" for i in range(COMMITTED_KEPT + 100)))
    agreement.insert(hypothesis)
    agreement.insert(hypothesis)
    assert agreement.committed_count == COMMITTED_KEPT + 100
    assert len(agreement.committed) == COMMITTED_KEPT
    assert agreement.committed[-1].word == f" w{COMMITTED_KEPT + 99}"
    assert agreement.committed_end == hypothesis[-1].end


def squeezed(text: str, at: float) -> list[Word]:
    """Words the model wrote in a loop: all at one instant."""
    return [Word(f" {w}", at, at, 0.2) for w in text.split()]


def test_a_decoding_loop_is_cut_where_the_phrase_starts_again() -> None:
    """tiny.en on a live buffer ending in a pause (the 1 s beat replay of stream-63s): two
    hypotheses in a row looped alike, and "fellow Americans and so my fellow Americans and so
    my fellow Americans" was committed."""
    said = words("And so my fellow Americans.", start=52.6)
    looped = said + squeezed("And so my fellow Americans. " * 3, at=54.6)
    assert before_decoding_loop(looped) == said
    agreement = LocalAgreement()
    agreement.insert(before_decoding_loop(said[:3]))
    agreement.insert(before_decoding_loop(looped))
    assert texts(agreement.insert(before_decoding_loop(looped))) == "fellow Americans."
    assert texts(agreement.committed) == "And so my fellow Americans."


def test_a_phrase_really_said_twice_is_kept() -> None:
    spoken = words("we shall fight we shall fight on the beaches")
    assert before_decoding_loop(spoken) == spoken
    # short repeats ("no no") are not loops however fast
    assert before_decoding_loop(squeezed("no no no", at=1.0)) == squeezed("no no no", at=1.0)
    assert before_decoding_loop([]) == []
