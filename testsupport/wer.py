"""Word error rate after Whisper's English text normalisation (numbers, spelling, punctuation),
or its basic one (case, punctuation) for other languages."""

from __future__ import annotations

from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

_normalize = EnglishTextNormalizer()
_basic = BasicTextNormalizer()


def normalized_words(text: str, *, english: bool = True) -> list[str]:
    return (_normalize if english else _basic)(text).split()


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str, *, english: bool = True) -> float:
    """`english=False` for a reference in another language."""
    ref = normalized_words(reference, english=english)
    hyp = normalized_words(hypothesis, english=english)
    if not ref:
        return float(bool(hyp))
    return edit_distance(ref, hyp) / len(ref)
