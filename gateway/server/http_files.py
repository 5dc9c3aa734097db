"""HTTP file transcription: `/transcribe`, `/upload` and OpenAI's `/v1/audio/transcriptions` and
`/v1/audio/translations`.

Both flavours share one pipeline (read the upload, decode it, transcribe it window by window)
and differ only in their options and in how the result is written: the gateway's own JSON
(or its progress events) versus OpenAI's formats (or its `transcript.text.*` events).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from aiohttp import web
from multidict import MultiDictProxy

from gateway.core.contract import (
    AsrBusy,
    AsrError,
    AsrRejected,
    AsrUnavailable,
    TranscribeOptions,
)
from gateway.core.diarization import MAX_SPEAKERS, SpeakerSegment
from gateway.core.transcript import Transcript
from gateway.modes.audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    AudioTooLongError,
    MissingChannelError,
    NotAudioError,
    decode_audio,
)
from gateway.modes.diarize import SpeakerCount, diarize
from gateway.modes.files import FileProgress, assemble, collect, transcribe_audio
from gateway.modes.vad import SpeechMap, VadConfig
from gateway.server.admission import take_turn, watch_decoded_audio
from gateway.server.errors import RETRY_AFTER_S, ApiError
from gateway.server.formats import RESPONSE_FORMATS, TIMESTAMP_GRANULARITIES, render, usage
from gateway.server.http_models import check_model
from gateway.server.keys import ASR, SETTINGS, transcriber
from gateway.server.metrics import METRICS
from gateway.server.openai_options import chunking_strategy, flag, includes
from gateway.server.uploads import read_upload

logger = logging.getLogger(__name__)

MAX_KNOWN_SPEAKERS = 4  # as OpenAI: up to 4 known_speaker_names[] with their references
MAX_NAME_CHARS = 64
MAX_REFERENCE_SECONDS = 30.0  # OpenAI asks for 2-10 s of each known speaker
DATA_URL = re.compile(r"data:(?:[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+-]+)*;base64,(.*)", re.S)

DIARIZED_JSON = "diarized_json"  # OpenAI's response_format with speakers


@dataclass(frozen=True)
class FileRequest:
    options: TranscribeOptions
    channel: int | None  # one channel of the file instead of the downmix
    stream: bool  # answer with server-sent events
    response_format: str = "json"  # OpenAI route only
    granularities: frozenset[str] = frozenset({"segment"})  # OpenAI route only
    vad: VadConfig = VadConfig()  # how windows are cut: OpenAI's chunking_strategy
    model: str | None = None  # OpenAI routes: the `model` field, which must be served
    speakers: SpeakerCount | None = None  # diarize: who spoke when (None: not asked)
    # diarize: (name, audio file bytes) of each known speaker (OpenAI's known_speaker_*[])
    known_speakers: tuple[tuple[str, bytes], ...] = ()
    word_timestamps: bool = False  # words in the answer (options may ask them for diarization)


def _temperature(fields: MultiDictProxy[str]) -> float:
    raw = fields.get("temperature", "0")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ApiError(
            400, f"temperature must be a number between 0 and 1, got {raw!r}", "invalid_value"
        )
    return value


def _channel(fields: MultiDictProxy[str]) -> int | None:
    raw = fields.get("channel")
    if raw in (None, ""):
        return None
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit alone lets '²' through
        raise ApiError(
            400, f"channel must be a channel number from 0, got {raw!r}", "invalid_value"
        )
    return int(raw)


def _speaker_bound(fields: MultiDictProxy[str], name: str, default: int) -> int:
    raw = fields.get(name)
    if raw in (None, ""):
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_SPEAKERS:
        raise ApiError(
            400,
            f"{name} must be a whole number from 1 to {MAX_SPEAKERS}, got {raw!r}",
            "invalid_value",
            param=name,
        )
    return int(raw)


def _speaker_count(fields: MultiDictProxy[str]) -> SpeakerCount:
    count = SpeakerCount(
        _speaker_bound(fields, "min_speakers", 1),
        _speaker_bound(fields, "max_speakers", MAX_SPEAKERS),
    )
    if count.min_speakers > count.max_speakers:
        raise ApiError(
            400,
            f"min_speakers ({count.min_speakers}) is more than max_speakers ({count.max_speakers})",
            "invalid_value",
            param="min_speakers",
        )
    return count


def _diarization(fields: MultiDictProxy[str], asked: bool) -> SpeakerCount | None:
    """The speaker count to diarize with, None when not asked."""
    return _speaker_count(fields) if asked else None


def _listed(fields: MultiDictProxy[str], name: str) -> list[str]:
    return fields.getall(f"{name}[]", []) + fields.getall(name, [])


def _reference(value: str) -> bytes:
    """The audio file in a data URL (`data:audio/wav;base64,...`)."""
    match = DATA_URL.fullmatch(value.strip())
    try:
        data = base64.b64decode(match[1], validate=True) if match else b""
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise ApiError(
            400,
            "each known_speaker_references[] must be a data URL of audio, "
            "e.g. data:audio/wav;base64,...",
            "invalid_value",
            param="known_speaker_references",
        )
    return data


def _known_speakers(fields: MultiDictProxy[str], diarize: bool) -> tuple[tuple[str, bytes], ...]:
    """OpenAI's `known_speaker_names[]` with `known_speaker_references[]`, checked."""
    names = _listed(fields, "known_speaker_names")
    references = _listed(fields, "known_speaker_references")
    if not names and not references:
        return ()

    def refuse(message: str, param: str) -> ApiError:
        return ApiError(400, message, "invalid_value", param=param)

    if not diarize:
        raise refuse("known speakers come with diarization", "known_speaker_names")
    if len(names) != len(references):
        raise refuse(
            f"{len(names)} known_speaker_names[] for {len(references)} "
            "known_speaker_references[]: one reference per name",
            "known_speaker_references",
        )
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise refuse(f"at most {MAX_KNOWN_SPEAKERS} known speakers", "known_speaker_names")
    for name in names:
        if not name.strip() or len(name) > MAX_NAME_CHARS:
            raise refuse(
                f"each known_speaker_names[] must be 1 to {MAX_NAME_CHARS} characters",
                "known_speaker_names",
            )
    if len(set(names)) != len(names):
        raise refuse("known_speaker_names[] must differ", "known_speaker_names")
    return tuple((name, _reference(value)) for name, value in zip(names, references, strict=True))


def _options(
    fields: MultiDictProxy[str], words: bool, diarize: bool, logprobs: bool = False
) -> TranscribeOptions:
    """The model's options for `fields`; `words`: the answer shows words. Diarization places
    every word by its times, and needs no probabilities where the answer shows no words."""
    return TranscribeOptions(
        language=fields.get("language") or None,
        prompt=fields.get("prompt") or None,
        temperature=_temperature(fields),
        word_timestamps=words or diarize,
        word_times_only=diarize and not words,
        logprobs=logprobs,
    )


def native_request(fields: MultiDictProxy[str]) -> FileRequest:
    stream, words = flag(fields, "stream"), flag(fields, "word_timestamps")
    speakers = _diarization(fields, flag(fields, "diarize"))
    return FileRequest(
        _options(fields, words, speakers is not None),
        _channel(fields),
        stream,
        speakers=speakers,
        known_speakers=_known_speakers(fields, speakers is not None),
        word_timestamps=words,
    )


def openai_request(fields: MultiDictProxy[str]) -> FileRequest:
    response_format = fields.get("response_format", "json")
    if response_format not in (*RESPONSE_FORMATS, DIARIZED_JSON):
        raise ApiError(
            400,
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, {DIARIZED_JSON}, "
            f"got {response_format!r}",
            "invalid_value",
        )
    granularities = frozenset(
        fields.getall("timestamp_granularities[]", [])
        + fields.getall("timestamp_granularities", [])
    ) or frozenset({"segment"})
    if unknown := granularities - set(TIMESTAMP_GRANULARITIES):
        raise ApiError(
            400,
            f"timestamp_granularities must be among {', '.join(TIMESTAMP_GRANULARITIES)}, "
            f"got {', '.join(sorted(unknown))}",
            "invalid_value",
        )
    stream = flag(fields, "stream")
    logprobs = "logprobs" in includes(fields)
    if logprobs and not stream and response_format != "json":
        raise ApiError(
            400,
            "include[]=logprobs comes with response_format json (or stream=true), "
            f"not {response_format}",
            "invalid_value",
            param="include",
        )
    diarize = flag(fields, "diarize")  # the gateway's own: speakers as srt/vtt voice tags
    if diarize and response_format not in ("srt", "vtt", DIARIZED_JSON):
        raise ApiError(
            400,
            f"diarize=true comes with response_format srt or vtt (speakers as voice tags); "
            f"{DIARIZED_JSON} names the speakers in JSON, not {response_format}",
            "invalid_value",
            param="diarize",
        )
    speakers = _diarization(fields, response_format == DIARIZED_JSON or diarize)
    return FileRequest(
        _options(fields, "word" in granularities, speakers is not None, logprobs),
        channel=None,
        stream=stream,
        response_format=response_format,
        granularities=granularities,
        vad=chunking_strategy(fields),
        model=fields.get("model") or None,
        speakers=speakers,
        known_speakers=_known_speakers(fields, speakers is not None),
        word_timestamps="word" in granularities,
    )


def translation_request(fields: MultiDictProxy[str]) -> FileRequest:
    """OpenAI's translation form (`file`, `model`, `prompt`, `response_format`,
    `temperature`): the transcription form, answered in English."""
    if fields.get("response_format") == DIARIZED_JSON:
        raise ApiError(
            400,
            "diarized_json is a transcription format",
            "invalid_value",
            param="response_format",
        )
    file_request = openai_request(fields)
    return replace(file_request, options=replace(file_request.options, task="translate"))


async def _decode(request: web.Request, data: bytes, channel: int | None) -> np.ndarray:
    settings = request.app[SETTINGS]
    try:
        return await decode_audio(
            data,
            channel=channel,
            max_seconds=settings.max_audio_seconds,
            timeout=settings.decode_timeout_s,
            watch=watch_decoded_audio(request),
        )
    except NotAudioError as exc:
        raise ApiError(415, str(exc), "unsupported_file_type") from exc
    except AudioTooLongError as exc:
        raise ApiError(413, str(exc), "audio_too_long") from exc
    except MissingChannelError as exc:
        raise ApiError(400, str(exc), "invalid_value") from exc
    except AudioDecodeError as exc:
        raise ApiError(400, str(exc), "invalid_audio") from exc


def _asr_error(exc: AsrError) -> ApiError:
    """Busy (Triton's queue full) and unavailable: retry later; rejected: the client's
    request; anything else (`AsrFailed`): the model's fault."""
    if isinstance(exc, AsrBusy):
        return ApiError(503, str(exc), "server_busy", retry_after=RETRY_AFTER_S)
    if isinstance(exc, AsrUnavailable):
        return ApiError(503, str(exc), "model_unavailable", retry_after=RETRY_AFTER_S)
    if isinstance(exc, AsrRejected):
        return ApiError(400, f"the model refused the request: {exc}", "invalid_request")
    logger.error("the model failed on an upload: %s", exc)  # internals stay in the log
    return ApiError(
        500,
        "the speech model failed on this audio; the request id finds it in the gateway's log",
        "model_error",
        retry_after=RETRY_AFTER_S,
    )


async def _decode_references(
    request: web.Request, known: tuple[tuple[str, bytes], ...]
) -> list[tuple[str, np.ndarray]]:
    """Each known speaker's reference audio, decoded as uploads are; a bad one is a 400
    naming `known_speaker_references`."""
    settings = request.app[SETTINGS]
    decoded = []
    for name, data in known:
        try:
            audio = await decode_audio(
                data,
                max_seconds=min(MAX_REFERENCE_SECONDS, settings.max_audio_seconds),
                timeout=settings.decode_timeout_s,
                watch=watch_decoded_audio(request),
            )
        except AudioTooLongError as exc:
            raise ApiError(
                400,
                f"the reference of {name!r} is longer than {MAX_REFERENCE_SECONDS:g} s",
                "invalid_value",
                param="known_speaker_references",
            ) from exc
        except AudioDecodeError as exc:  # not audio at all, too
            raise ApiError(
                400,
                f"the reference of {name!r} is not audio that can be decoded: {exc}",
                "invalid_value",
                param="known_speaker_references",
            ) from exc
        if audio.size == 0:
            raise ApiError(
                400,
                f"the reference of {name!r} holds no audio",
                "invalid_value",
                param="known_speaker_references",
            )
        decoded.append((name, audio))
    return decoded


@dataclass(frozen=True)
class FileRun:
    """An upload under way: what it asks, its transcription's progress, and what its
    diarization needs beside the transcript."""

    request: FileRequest
    progress: AsyncIterator[FileProgress]
    audio: np.ndarray
    known: list[tuple[str, np.ndarray]]  # the known speakers' names and decoded references
    # the voice detector's scores, found once for the windows and the speakers (None: the
    # upload asks for no speakers, and the transcription scores the audio itself)
    scores: np.ndarray | None


async def _run(
    request: web.Request, parse: Callable[[MultiDictProxy[str]], FileRequest]
) -> FileRun:
    settings = request.app[SETTINGS]
    upload = await read_upload(request, settings.max_upload_bytes, settings.upload_read_timeout_s)
    file_request = parse(upload.fields)
    await check_model(request, file_request.model, file_request.options.task)
    await take_turn(request)  # a running slot, now that the body is in
    audio = await _decode(request, upload.data, file_request.channel)
    known = await _decode_references(request, file_request.known_speakers)
    logger.info(
        "%s: %s (%d bytes, %.1f s of audio)",
        request.path,
        upload.filename or "raw body",
        len(upload.data),
        audio.size / SAMPLE_RATE,
    )
    found = None
    if file_request.speakers is not None:
        found = await SpeechMap.of(audio, file_request.vad)
    progress = transcribe_audio(
        transcriber(request.app),
        audio,
        file_request.options,
        window_seconds=settings.window_seconds,
        in_flight=settings.file_windows_in_flight,
        vad=file_request.vad,
        found=found,
    )
    progress = request.app[METRICS].count_file_audio(progress)
    return FileRun(file_request, progress, audio, known, None if found is None else found.scores)


async def _collect(progress: AsyncIterator[FileProgress], duration: float) -> Transcript:
    try:
        return await collect(progress, duration)
    except AsrError as exc:
        raise _asr_error(exc) from exc


async def _speakers(
    request: web.Request, run: FileRun, transcript: Transcript
) -> list[SpeakerSegment]:
    """The transcript's segments with their speakers (the speaker model, then clustering,
    named after the known speakers they match); raises an `AsrError`."""
    assert run.request.speakers is not None
    return await diarize(
        request.app[ASR],
        run.audio,
        transcript.segments,
        run.request.speakers,
        run.known,
        scores=run.scores,
    )


def _without_words(item: dict[str, Any], word_timestamps: bool) -> dict[str, Any]:
    if not word_timestamps:
        del item["words"]
    return item


async def _send_events(
    request: web.Request,
    progress: AsyncIterator[FileProgress],
    to_event: Callable[[FileProgress], dict[str, Any] | None],
    last_events: Callable[[list[FileProgress]], Awaitable[list[dict[str, Any]]]],
) -> web.StreamResponse:
    """Server-sent events: one per progress report, then the last ones (once every report is
    in: the speakers, the whole text); errors as an event."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    async def send(event: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())

    reports: list[FileProgress] = []
    try:
        async for report in progress:
            reports.append(report)
            if (event := to_event(report)) is not None:
                await send(event)
        for event in await last_events(reports):
            await send(event)
    except AsrError as exc:
        await send({"type": "error", **_asr_error(exc).body()})
    await response.write_eof()
    return response


def _native_json(transcript: Transcript, word_timestamps: bool) -> dict[str, Any]:
    body = transcript.to_json()
    if not word_timestamps:
        for segment in body["segments"]:
            del segment["words"]
    return body


async def transcribe(request: web.Request) -> web.StreamResponse:
    """`POST /transcribe` and `POST /upload`: the gateway's own JSON (or progress events);
    with `diarize`, each segment names its speaker and `speakers` lists them."""
    run = await _run(request, native_request)
    file_request, progress, audio = run.request, run.progress, run.audio
    duration = audio.size / SAMPLE_RATE

    async def body(transcript: Transcript) -> dict[str, Any]:
        if file_request.speakers is None:
            return _native_json(transcript, file_request.options.word_timestamps)
        labelled = await _speakers(request, run, transcript)
        answer = _native_json(transcript, True)
        answer["segments"] = [
            _without_words(item.to_json(index), file_request.word_timestamps)
            for index, item in enumerate(labelled)
        ]
        answer["speakers"] = sorted({item.speaker for item in labelled})
        return answer

    async def done(reports: list[FileProgress]) -> list[dict[str, Any]]:
        return [{"type": "done", "transcript": await body(assemble(reports, duration))}]

    if file_request.stream:
        return await _send_events(
            request,
            progress,
            lambda report: {
                "type": "progress",
                "processed": round(report.processed, 3),
                "duration": round(report.duration, 3),
                "delta": report.delta,
            },
            done,
        )
    transcript = await _collect(progress, duration)
    try:
        return web.json_response(await body(transcript))
    except AsrError as exc:
        raise _asr_error(exc) from exc


def diarized_json(transcript: Transcript, labelled: list[SpeakerSegment]) -> dict[str, Any]:
    """OpenAI's `diarized_json`: the text, and segments each with its speaker."""
    return {
        "task": "transcribe",
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{index}",
                "start": item.segment.start,
                "end": item.segment.end,
                "text": item.segment.text.strip(),
                "speaker": item.speaker,
            }
            for index, item in enumerate(labelled)
        ],
        "usage": usage(transcript.duration),
    }


def _delta_event(report: FileProgress, logprobs: bool) -> dict[str, Any] | None:
    """OpenAI's `transcript.text.delta`; none for a window that adds no text."""
    if not report.delta:
        return None
    event: dict[str, Any] = {"type": "transcript.text.delta", "delta": report.delta}
    if logprobs:
        event["logprobs"] = [token.to_json() for token in report.logprobs]
    return event


def _done_event(transcript: Transcript, logprobs: bool) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "transcript.text.done", "text": transcript.text}
    if logprobs:
        event["logprobs"] = [token.to_json() for token in transcript.logprobs]
    event["usage"] = usage(transcript.duration)
    return event


async def openai_transcriptions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/audio/transcriptions`, as OpenAI's API (`model`, when given, must name the
    weights Triton serves or `whisper-1`)."""
    return await _openai(request, openai_request)


async def openai_translations(request: web.Request) -> web.StreamResponse:
    """`POST /v1/audio/translations`, as OpenAI's API: the audio's speech in English, by the
    model's translate task (multilingual weights only)."""
    return await _openai(request, translation_request)


async def _openai(
    request: web.Request, parse: Callable[[MultiDictProxy[str]], FileRequest]
) -> web.StreamResponse:
    run = await _run(request, parse)
    file_request, progress, audio = run.request, run.progress, run.audio
    duration = audio.size / SAMPLE_RATE
    logprobs = file_request.options.logprobs

    async def last(reports: list[FileProgress]) -> list[dict[str, Any]]:
        """With diarized_json, a `transcript.text.segment` event per segment (the speakers
        are known once the whole file is read), then `transcript.text.done`."""
        transcript = assemble(reports, duration)
        segments: list[dict[str, Any]] = []
        if file_request.speakers is not None:
            labelled = await _speakers(request, run, transcript)
            segments = diarized_json(transcript, labelled)["segments"]
        return [*segments, _done_event(transcript, logprobs)]

    if file_request.stream:
        return await _send_events(
            request, progress, lambda report: _delta_event(report, logprobs), last
        )
    transcript = await _collect(progress, duration)
    speakers = None
    if file_request.speakers is not None:
        try:
            labelled = await _speakers(request, run, transcript)
        except AsrError as exc:
            raise _asr_error(exc) from exc
        if file_request.response_format == DIARIZED_JSON:
            return web.json_response(diarized_json(transcript, labelled))
        transcript = replace(transcript, segments=tuple(item.segment for item in labelled))
        speakers = [item.speaker for item in labelled]
    body, content_type = render(
        transcript,
        file_request.response_format,
        granularities=file_request.granularities,
        task=file_request.options.task,
        logprobs=logprobs,
        speakers=speakers,
    )
    return web.Response(body=body.encode("utf-8"), headers={"Content-Type": content_type})
