"""A `Transcript` in the response formats of OpenAI's `/v1/audio/transcriptions` (whisper-1).

Bodies and content types match what OpenAI returns, so the official `openai` client parses
them unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from importlib import resources
from typing import Any

from gateway.core.transcript import Segment, Transcript

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TIMESTAMP_GRANULARITIES = ("segment", "word")

JSON = "application/json"
PLAIN = "text/plain; charset=utf-8"  # what OpenAI sends for `text` and `srt`
VTT = "text/vtt; charset=utf-8"

# whisper.tokenizer.LANGUAGES (code -> name), kept as data: importing whisper pulls in torch,
# which the gateway does not install.
LANGUAGE_NAMES: dict[str, str] = json.loads(
    resources.files("gateway.server").joinpath("languages.json").read_text(encoding="utf-8")
)


def render(
    transcript: Transcript,
    response_format: str,
    *,
    granularities: AbstractSet[str] = frozenset({"segment"}),
    task: str = "transcribe",
    logprobs: bool = False,
    speakers: Sequence[str] | None = None,
) -> tuple[str, str]:
    """(body, Content-Type header value) of `transcript` in `response_format`.

    `granularities` (OpenAI's `timestamp_granularities`) and `task` only shape `verbose_json`,
    `logprobs` (OpenAI's `include[]=logprobs`) only `json`. Both JSON formats carry `usage`.
    `speakers` (one per segment, diarization) only `srt` and `vtt`: a cue's speaker as
    `[A] ...` in SubRip, which has no voice tag, and WebVTT's voice tag `<v A>...`.
    """
    unknown = set(granularities) - set(TIMESTAMP_GRANULARITIES)
    if unknown:
        raise ValueError(
            f"unknown timestamp granularities {sorted(unknown)}; "
            f"expected any of: {', '.join(TIMESTAMP_GRANULARITIES)}"
        )
    match response_format:
        case "json":
            body: dict[str, Any] = {"text": transcript.text}
            if logprobs:
                body["logprobs"] = [token.to_json() for token in transcript.logprobs]
            body["usage"] = usage(transcript.duration)
            return _dumps(body), JSON
        case "text":
            return transcript.text + "\n", PLAIN
        case "srt":
            return srt(transcript, speakers), PLAIN
        case "vtt":
            return vtt(transcript, speakers), VTT
        case "verbose_json":
            return _dumps(verbose_json(transcript, granularities, task)), JSON
    raise ValueError(
        f"unknown response_format {response_format!r}; "
        f"expected one of: {', '.join(RESPONSE_FORMATS)}"
    )


def usage(duration: float) -> dict[str, Any]:
    """OpenAI's usage of a model billed by audio length (whisper-1): whole seconds, rounded
    up from the duration as answered (to the millisecond)."""
    return {"type": "duration", "seconds": math.ceil(round(duration, 3))}


def language_name(language: str) -> str:
    """OpenAI's spelling of a language: `en` or `English` -> `english`."""
    key = language.strip().lower()
    return LANGUAGE_NAMES.get(key, key)


def timestamp(seconds: float, decimal_marker: str) -> str:
    """`HH:MM:SS<marker>mmm`; negative times become 0, hours take as many digits as needed."""
    milliseconds = round(max(seconds, 0.0) * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def srt(transcript: Transcript, speakers: Sequence[str] | None = None) -> str:
    tags = [f"[{speaker}] " for speaker in speakers] if speakers else None
    return "".join(
        f"{number}\n{_cue(segment, ',', tags[number - 1] if tags else '')}"
        for number, segment in enumerate(transcript.segments, start=1)
    )


def vtt(transcript: Transcript, speakers: Sequence[str] | None = None) -> str:
    tags = [f"<v {speaker}>" for speaker in speakers] if speakers else None
    return "WEBVTT\n\n" + "".join(
        _cue(segment, ".", tags[index] if tags else "")
        for index, segment in enumerate(transcript.segments)
    )


def verbose_json(
    transcript: Transcript, granularities: AbstractSet[str], task: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(transcript.language),
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
    }
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": index,
                "seek": 0,
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text,
                "tokens": list(segment.tokens),
                "temperature": segment.temperature,
                "avg_logprob": segment.avg_logprob,
                "compression_ratio": segment.compression_ratio,
                "no_speech_prob": segment.no_speech_prob,
            }
            for index, segment in enumerate(transcript.segments)
        ]
    if "word" in granularities:
        body["words"] = [
            {
                "word": word.word.strip(),
                "start": round(word.start, 3),
                "end": round(word.end, 3),
                # an upload's words always carry it (only a live step's may not)
                **({} if word.probability is None else {"probability": round(word.probability, 4)}),
            }
            for word in transcript.words
        ]
    body["usage"] = usage(transcript.duration)
    return body


def _cue(segment: Segment, decimal_marker: str, tag: str = "") -> str:
    start, end = timestamp(segment.start, decimal_marker), timestamp(segment.end, decimal_marker)
    return f"{start} --> {end}\n{tag}{segment.text.strip()}\n\n"


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)
