"""What a transcription is: words inside segments inside a transcript, times in seconds.

The same types describe one 30 s window (times from the window's start, as the model returns
them) and a whole file (times from the file's start, after merging windows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

# openai-whisper's checks on a decode (`transcribe()`'s defaults, which the model applies too):
# output more repetitive or less likely than this counts as failed
MAX_COMPRESSION_RATIO = 2.4
MIN_AVG_LOGPROB = -1.0


@dataclass(frozen=True)
class Word:
    word: str  # as Whisper writes it: leading space, punctuation attached
    start: float
    end: float
    # Whisper's probability for it (the mean of its tokens'); None where the window asked for
    # its words' times only (`WORD_TIMES_ONLY`: live steps without logprobs, diarized uploads
    # that show no words)
    probability: float | None

    def shifted(self, seconds: float) -> Word:
        return replace(self, start=round(self.start + seconds, 3), end=round(self.end + seconds, 3))


@dataclass(frozen=True)
class TokenLogprob:
    """One text token the model chose and its log-probability (OpenAI's `logprobs` item):
    `token` is its text, `bytes` its UTF-8 bytes (a character split across tokens is whole
    only in the bytes joined; its pieces' `token` show U+FFFD)."""

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> TokenLogprob:
        return cls(item["token"], float(item["logprob"]), tuple(item.get("bytes", ())))

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "bytes": list(self.bytes)}


def _optional(item: dict[str, Any], key: str) -> float | None:
    value = item.get(key)
    return None if value is None else float(value)


def strip_leading_space(logprobs: Sequence[TokenLogprob]) -> tuple[TokenLogprob, ...]:
    """`logprobs` with the whitespace at their start removed, as a text's is (`str.lstrip`):
    the first tokens of a transcript then join to its text exactly."""
    result = list(logprobs)
    for index, item in enumerate(result):
        token = item.token.lstrip()
        if token:
            cut = len(item.token[: len(item.token) - len(token)].encode("utf-8"))
            result[index] = replace(item, token=token, bytes=item.bytes[cut:])
            return tuple(result)
        result[index] = replace(item, token="", bytes=())
    return tuple(result)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str  # as Whisper writes it: leading space
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    tokens: tuple[int, ...] = ()
    words: tuple[Word, ...] = ()
    # False: the model's decode stopped inside this segment (no closing timestamp), so the
    # speech after its start may not all be in it; file mode reads it again
    complete: bool = True
    # each text token's log-probability, in order (when the request asked for them)
    logprobs: tuple[TokenLogprob, ...] = ()
    # start and end as the model's decode wrote them (its timestamp tokens; `start` and `end`
    # move to the first and last word's times when words are timed), None when not given
    timestamps: tuple[float, float] | None = None

    @property
    def failed_checks(self) -> bool:
        """Whether its decode looked like a failure (repetitive or unlikely text); the model
        retries such windows at a higher temperature, but not live streams' steps."""
        return self.compression_ratio > MAX_COMPRESSION_RATIO or self.avg_logprob < MIN_AVG_LOGPROB

    def retimed(self, time: Callable[[float], float]) -> Segment:
        """The segment with its times and its words' times mapped by `time` (to the ms)."""
        return replace(
            self,
            start=round(time(self.start), 3),
            end=round(time(self.end), 3),
            timestamps=None
            if self.timestamps is None
            else (round(time(self.timestamps[0]), 3), round(time(self.timestamps[1]), 3)),
            words=tuple(
                replace(word, start=round(time(word.start), 3), end=round(time(word.end), 3))
                for word in self.words
            ),
        )

    def shifted(self, seconds: float) -> Segment:
        return self.retimed(lambda time: time + seconds)

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Segment:
        return cls(
            start=float(item["start"]),
            end=float(item["end"]),
            text=item["text"],
            avg_logprob=float(item["avg_logprob"]),
            no_speech_prob=float(item["no_speech_prob"]),
            compression_ratio=float(item["compression_ratio"]),
            temperature=float(item["temperature"]),
            tokens=tuple(item.get("tokens", ())),
            complete=bool(item.get("complete", True)),
            words=tuple(
                Word(w["word"], float(w["start"]), float(w["end"]), _optional(w, "probability"))
                for w in item.get("words", ())
            ),
            logprobs=tuple(TokenLogprob.from_json(t) for t in item.get("logprobs", ())),
            timestamps=(
                (float(item["timestamps"][0]), float(item["timestamps"][1]))
                if "timestamps" in item
                else None
            ),
        )

    def to_json(self, index: int) -> dict[str, Any]:
        item = {"id": index, **asdict(self)}
        del item["complete"]  # how the model's decode ended: not part of the reply
        del item["logprobs"]  # OpenAI's route only (`include[]=logprobs`)
        del item["timestamps"]  # a draft's times (`TranscribeOptions.draft`), not the reply's
        item["tokens"] = list(self.tokens)
        item["words"] = [asdict(word) for word in self.words]
        return item


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio transcribed
    segments: tuple[Segment, ...] = ()

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(word for segment in self.segments for word in segment.words)

    @property
    def logprobs(self) -> tuple[TokenLogprob, ...]:
        """Every text token's log-probability, joined across segments as the text is."""
        return strip_leading_space([t for segment in self.segments for t in segment.logprobs])

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Transcript:
        return cls(
            text=item["text"],
            language=item["language"],
            duration=float(item["duration"]),
            segments=tuple(Segment.from_json(segment) for segment in item["segments"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The gateway's own JSON reply (`/transcribe`, `/upload`)."""
        return {
            "text": self.text,
            "language": self.language,
            "duration": round(self.duration, 3),
            "segments": [segment.to_json(index) for index, segment in enumerate(self.segments)],
        }
