"""LocalAgreement-2: commit the words that two consecutive hypotheses agree on.

From "Turning Whisper into Real-Time Transcription System" (Macháček et al., 2023): the
stream's uncommitted audio is transcribed again every step; a word is final once two
hypotheses in a row start with it. Committed words never change; what follows them is the
unstable tail shown as partial text. Pure: words in, words out, no I/O.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

from gateway.core.transcript import Word

_NOT_WORD = re.compile(r"[^\w']+")
MAX_REPEAT_WORDS = 5  # longest run of committed words a new hypothesis may repeat
# committed words kept: the agreement needs the last few; a stream's life would be unbounded
COMMITTED_KEPT = 256
# A decoding loop: a phrase of at least this many words written again straight after itself ...
MIN_LOOP_WORDS = 3
# ... in less than this per word (the model's timestamps squeeze a loop into a few frames;
# spoken words take 0.15 s and more)
LOOP_SECONDS_PER_WORD = 0.1


def word_key(word: Word) -> str:
    return _NOT_WORD.sub("", word.word.lower())


def _agreed_prefix(previous: Sequence[Word], current: Sequence[Word]) -> int:
    count = 0
    for before, now in zip(previous, current, strict=False):
        if word_key(before) != word_key(now):
            break
        count += 1
    return count


def before_decoding_loop(words: Sequence[Word]) -> list[Word]:
    """The words up to where the model starts writing a phrase again and again (tiny.en on a
    live buffer ending in a pause: "And so my fellow Americans." twenty times, squeezed into
    its last half second). Two hypotheses in a row can loop alike, and would commit the
    copies; a phrase really said twice takes the time of saying it, and is kept."""
    keys = [word_key(word) for word in words]
    for start in range(1, len(words)):
        for size in range(MIN_LOOP_WORDS, min(start, len(words) - start) + 1):
            if keys[start : start + size] != keys[start - size : start]:
                continue
            copy = words[start : start + size]
            if copy[-1].end - copy[0].start < LOOP_SECONDS_PER_WORD * size:
                return list(words[:start])
    return list(words)


class LocalAgreement:
    """Commits the agreed prefix of successive hypotheses (words in stream time)."""

    def __init__(self) -> None:
        self.committed: deque[Word] = deque(maxlen=COMMITTED_KEPT)  # the latest ones
        self.committed_count = 0  # words committed in all
        self._tail: list[Word] = []  # the last hypothesis, minus what is committed

    @property
    def committed_end(self) -> float:
        return self.committed[-1].end if self.committed else 0.0

    def _commit(self, words: Sequence[Word]) -> None:
        self.committed.extend(words)
        self.committed_count += len(words)

    @property
    def tail(self) -> list[Word]:
        """The unconfirmed words of the latest hypothesis (the partial text)."""
        return list(self._tail)

    def _new_part(self, hypothesis: Sequence[Word]) -> list[Word]:
        """The hypothesis without what is already committed: by time, then by text where the
        hypothesis repeats the last committed words (timestamps drift between steps)."""
        # by the middle of the word: its start drifts earlier than the committed end by a
        # few hundred ms from one hypothesis to the next
        words = [w for w in hypothesis if (w.start + w.end) / 2 > self.committed_end]
        committed_keys = [word_key(w) for w in list(self.committed)[-MAX_REPEAT_WORDS:]]
        for size in range(min(MAX_REPEAT_WORDS, len(committed_keys), len(words)), 0, -1):
            if [word_key(w) for w in words[:size]] == committed_keys[-size:]:
                return words[size:]
        return words

    def insert(self, hypothesis: Sequence[Word]) -> list[Word]:
        """Take a new hypothesis; return the words it newly commits."""
        current = self._new_part(hypothesis)
        agreed = _agreed_prefix(self._tail, current)
        newly = current[:agreed]
        self._commit(newly)
        self._tail = current[agreed:]
        return newly

    def commit_through(self, time: float) -> list[Word]:
        """Commit the unconfirmed words that end by `time`, agreed or not: their audio is
        about to be dropped (the stream fell behind), and a best guess beats a gap."""
        count = 0
        while count < len(self._tail) and self._tail[count].end <= time:
            count += 1
        forced, self._tail = self._tail[:count], self._tail[count:]
        self._commit(forced)
        return forced

    def flush(self, hypothesis: Sequence[Word] | None = None) -> list[Word]:
        """At the end of the stream: commit the rest of the last (or given) hypothesis."""
        remaining = self._new_part(hypothesis) if hypothesis is not None else self._tail
        self._commit(remaining)
        self._tail = []
        return list(remaining)
