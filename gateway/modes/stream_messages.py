"""The messages a live stream sends (docs/websocket-protocol.md): `final` text whose times
never go back, `partial` text only when it changed, and `skipped` audio the model never heard.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.core.transcript import Word

Message = dict[str, Any]
MIN_PROBABILITY = 1e-10  # a word Whisper gave no chance still gets a finite logprob
# Non-speech this long between two utterances ends a step's window (`streaming`: Whisper on
# "speech, long silence, speech" in one window leaves out or misplaces whole phrases on either
# side; tiny.en on the end of JFK, 12-27 s of silence, then JFK again: "can do for your
# country" or "And so my fellow Americans" lost). A buffer holds such a pause only after an
# outage or a backlog. Nor does a final span one: after an outage or a backlog, or at a
# stream's end, one commit can hold several utterances, and each gets a final of its own,
# with its own times (and speaker, with diarize).
LONG_PAUSE_SECONDS = 3.0


def word_logprobs(words: list[Word]) -> list[dict[str, Any]]:
    """One OpenAI `logprobs` entry per word: its text, and the log of Whisper's probability
    for it (the mean of its tokens' probabilities, from word timing; a stream that wants
    logprobs asks the model for them, `TranscribeOptions.logprobs`)."""
    return [
        {
            "token": word.word,
            "logprob": round(math.log(max(word.probability or 0.0, MIN_PROBABILITY)), 6),
            "bytes": list(word.word.encode()),
        }
        for word in words
    ]


class StreamMessages:
    def __init__(self, logprobs: bool = False) -> None:
        self.final_end = 0.0  # end time of the last final (or skipped) message sent
        self.partial = ""  # the text of the last partial message sent
        self.logprobs = logprobs  # finals carry their words' logprobs (the Realtime API)

    def finals(self, words: list[Word]) -> list[Message]:
        """Committed words as messages, one for each stretch without a long pause
        (`LONG_PAUSE_SECONDS`)."""
        messages: list[Message] = []
        first = 0
        for index in range(1, len(words) + 1):
            if index == len(words) or words[index].start - words[index - 1].end >= (
                LONG_PAUSE_SECONDS
            ):
                messages.append(self._final(words[first:index]))
                first = index
        return messages

    def _final(self, words: list[Word]) -> Message:
        """Words (at least one) as one message; its start is never before the previous end
        (word timestamps drift by a few hundred ms between hypotheses)."""
        start = max(words[0].start, self.final_end)
        end = round(max(words[-1].end, start), 3)
        message = {
            "type": "final",
            "text": "".join(word.word for word in words),
            "start": round(start, 3),
            "end": end,
        }
        if self.logprobs:
            message["logprobs"] = word_logprobs(words)
        self.final_end = end
        return message

    def partials(self, words: list[Word]) -> list[Message]:
        """The uncommitted words, when they differ from the last partial."""
        text = "".join(word.word for word in words)
        if text == self.partial:
            return []
        self.partial = text
        return [{"type": "partial", "text": text}]

    def skipped(self, start: float, end: float, reason: str) -> list[Message]:
        """Audio from `start` to `end` dropped before the model heard it (10 ms or more)."""
        if end - start < 0.01:
            return []
        self.final_end = max(self.final_end, round(end, 3))
        return [
            {"type": "skipped", "start": round(start, 3), "end": round(end, 3), "reason": reason}
        ]
