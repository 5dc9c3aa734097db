"""Who speaks each final of a live stream (`diarize` in its config).

The stream's audio is kept here as it comes, for `KEEP_SECONDS` (the session's own buffer is
trimmed as words are committed, sometimes before their final is sent). Each final's audio,
from its start to its end, goes to the speaker model, and the stream's `OnlineSpeakers` names
its speaker: the label stays the same for the life of the stream. A final shorter than one
window of the model is heard with the audio that follows it (most often the same voice going
on), up to a window where the stream has it: a new voice's first final is often a few words
("A gold ring will"), too short to be told apart alone. A final whose audio is
gone, or too short to embed, keeps the previous final's speaker; where the speaker model
fails, the final goes out without one (the transcript matters more than its speaker).
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

from gateway.core.contract import AsrError, SpeakerBackend
from gateway.core.online_speakers import MIN_NEW_SPEAKER_SECONDS, OnlineSpeakers
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_buffer import to_samples
from gateway.modes.stream_messages import Message

logger = logging.getLogger(__name__)

KEEP_SECONDS = 60.0  # two of the model's windows: a final is never longer than one
MIN_EMBED_SECONDS = 0.2  # less audio says nothing about a voice


class StreamSpeakers:
    def __init__(self, backend: SpeakerBackend) -> None:
        self.backend = backend
        self.speakers = OnlineSpeakers()
        self._frames: deque[np.ndarray] = deque()
        self._start = 0  # stream sample of the first kept frame's first sample
        self._end = 0  # stream sample just past the last one received
        self._last: str | None = None  # the previous final's speaker

    def append(self, samples: np.ndarray) -> None:
        self._frames.append(samples)
        self._end += samples.size
        keep_from = self._end - to_samples(KEEP_SECONDS)
        while self._frames and self._start + self._frames[0].size <= keep_from:
            self._start += self._frames.popleft().size

    def audio(self, start: float, end: float) -> np.ndarray:
        """The kept samples from stream time `start` to `end` (fewer where they are gone)."""
        first = max(to_samples(start), self._start)
        last = min(to_samples(end), self._end)
        if last <= first:
            return np.zeros(0, np.float32)
        kept = np.concatenate(list(self._frames))
        return kept[first - self._start : last - self._start]

    async def label(self, messages: list[Message]) -> list[Message]:
        """`messages` with `speaker` on each final (in place, and returned)."""
        for message in messages:
            if message["type"] == "final":
                speaker = await self.speaker_between(message["start"], message["end"])
                if speaker is not None:
                    message["speaker"] = speaker
        return messages

    async def speaker_between(self, start: float, end: float) -> str | None:
        """Who speaks from stream time `start` to `end` (None: nobody can say)."""
        audio = self.audio(start, max(end, start + MIN_NEW_SPEAKER_SECONDS))
        if audio.size < MIN_EMBED_SECONDS * SAMPLE_RATE and self._last is not None:
            return self._last
        if audio.size == 0:
            return None
        try:
            embedded = await self.backend.embed_speakers(audio)
        except AsrError as exc:
            logger.warning("no speaker for the final at %.2f-%.2f s: %s", start, end, exc)
            return None
        self._last = self.speakers.assign(embedded.embeddings, audio.size / SAMPLE_RATE)
        return self._last
