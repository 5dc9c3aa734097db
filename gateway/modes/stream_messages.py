"""The messages a live stream sends (docs/websocket-protocol.md): `final` text whose times
never go back, `partial` text only when it changed, and `skipped` audio the model never heard.
"""

from __future__ import annotations

from typing import Any

from gateway.core.transcript import Word

Message = dict[str, Any]


class StreamMessages:
    def __init__(self) -> None:
        self.final_end = 0.0  # end time of the last final (or skipped) message sent
        self.partial = ""  # the text of the last partial message sent

    def finals(self, words: list[Word]) -> list[Message]:
        """Committed words as one message; its start is never before the previous end (word
        timestamps drift by a few hundred ms between hypotheses)."""
        if not words:
            return []
        start = max(words[0].start, self.final_end)
        message = {
            "type": "final",
            "text": "".join(word.word for word in words),
            "start": round(start, 3),
            "end": round(max(words[-1].end, start), 3),
        }
        self.final_end = message["end"]
        return [message]

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
