"""The gateway's OpenAPI 3.1 document, served at `GET /openapi.json`.

Built from the code's own lists where there is one (response formats, granularities,
`include[]` values, `chunking_strategy` fields, speaker limits, content types), so that those
cannot drift; the rest is checked against the code by tests/server/test_openapi.py: every
route of the router is here (or, for the WebSockets, in `asyncapi.py`) and nothing else, the
form fields are the ones the parsers read, and every example below, sent to the gateway, gets
an answer that the schemas describe. A request example and the response example of the same
name go together (`jfk_srt` asks for what `jfk_srt` answers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from multidict import MultiDict, MultiDictProxy

from gateway.core.contract import ServedModel
from gateway.core.diarization import MAX_SPEAKERS, SpeakerSegment
from gateway.core.transcript import Segment, Transcript, Word
from gateway.server.api_schemas import SCHEMAS, Schema, const, ref
from gateway.server.errors import ApiError
from gateway.server.formats import (
    JSON,
    PLAIN,
    RESPONSE_FORMATS,
    TIMESTAMP_GRANULARITIES,
    VTT,
    render,
    usage,
    verbose_json,
)
from gateway.server.http_files import (
    DIARIZED_JSON,
    MAX_KNOWN_SPEAKERS,
    MAX_NAME_CHARS,
    diarized_json,
    native_request,
    openai_request,
    translation_request,
)
from gateway.server.http_models import ALIAS, model_not_found
from gateway.server.openai_options import (
    CHUNKING,
    INCLUDES,
    MAX_VAD_MILLISECONDS,
    SERVER_VAD_FIELDS,
)
from gateway.server.request_context import HEADER as REQUEST_ID_HEADER

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "apiKey"
EVENT_STREAM = "text/event-stream"
HTML = "text/html"
ANY_FILE = "*/*"  # a file served with the content type of its extension
ASYNCAPI_PATH = "/asyncapi.json"  # the WebSockets' document (asyncapi.py)

# --- the form fields of the upload routes --------------------------------------------------

FLAG = {"type": "boolean", "default": False}
MILLISECONDS = {"type": "integer", "minimum": 0, "maximum": MAX_VAD_MILLISECONDS}
_SERVER_VAD = {
    "type": const("server_vad"),
    "threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.3},
    "prefix_padding_ms": {**MILLISECONDS, "default": 300},
    "silence_duration_ms": {**MILLISECONDS, "default": 300},
}

FIELDS: dict[str, Schema] = {
    "file": {
        "type": "string",
        "format": "binary",
        "contentMediaType": "application/octet-stream",
        "description": "the audio: any format ffmpeg reads (wav, flac, mp3, ogg/opus, "
        "m4a/aac, webm, the sound of a video)",
    },
    "model": {
        "type": "string",
        "description": f"the served weights (`GET /v1/models`) or `{ALIAS}`, their alias; "
        "anything else is a 404 `model_not_found`",
        "examples": [ALIAS],
    },
    "language": {
        "type": "string",
        "default": "",
        "description": "ISO code (`en`) or name (`English`); empty: detected",
    },
    "prompt": {
        "type": "string",
        "default": "",
        "description": "text that conditions the decoder: names, jargon",
    },
    "temperature": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 0,
        "description": "the first temperature of the model's fallback schedule",
    },
    "response_format": {"enum": [*RESPONSE_FORMATS, DIARIZED_JSON], "default": "json"},
    "timestamp_granularities[]": {
        "type": "array",
        "items": {"enum": list(TIMESTAMP_GRANULARITIES)},
        "default": ["segment"],
        "description": "for `verbose_json` (also read without the `[]`)",
    },
    "stream": {**FLAG, "description": "server-sent events instead of one answer"},
    "include[]": {
        "type": "array",
        "items": {"enum": list(INCLUDES)},
        "default": [],
        "description": "`logprobs`: each text token's log-probability, in `json` and the "
        "stream's events (also read without the `[]`)",
    },
    CHUNKING: {
        "anyOf": [
            const("auto"),
            {
                "type": "object",
                "properties": {name: _SERVER_VAD[name] for name in SERVER_VAD_FIELDS},
                "required": ["type"],
                "additionalProperties": False,
            },
        ],
        "default": "auto",
        "description": "how the file's speech is found and cut into windows: `auto`, or a "
        "`server_vad` object as JSON (or as OpenAI's SDK sends it, one field "
        "`chunking_strategy[threshold]` per key)",
    },
    "diarize": {
        **FLAG,
        "description": "who spoke when: `/transcribe` labels each segment; on OpenAI's route "
        "with `srt` or `vtt`, each cue's speaker (`[A]`, `<v A>`)",
    },
    "min_speakers": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_SPEAKERS,
        "default": 1,
        "description": "with diarization: at least this many speakers",
    },
    "max_speakers": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_SPEAKERS,
        "default": MAX_SPEAKERS,
        "description": "with diarization: at most this many speakers",
    },
    "known_speaker_names[]": {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS},
        "maxItems": MAX_KNOWN_SPEAKERS,
        "default": [],
        "description": "with diarization: people to name, each with a reference",
    },
    "known_speaker_references[]": {
        "type": "array",
        "items": {"type": "string", "pattern": "^data:"},
        "maxItems": MAX_KNOWN_SPEAKERS,
        "default": [],
        "description": "a short sample of each named voice as a data URL "
        "(`data:audio/ogg;base64,...`, at most 30 s)",
    },
    "word_timestamps": {**FLAG, "description": "`words` in every segment"},
    "channel": {
        "type": "integer",
        "minimum": 0,
        "description": "one channel of a multi-channel file (0 is the first) instead of the "
        "downmix",
    },
}

_DIARIZATION = (
    "diarize",
    "min_speakers",
    "max_speakers",
    "known_speaker_names[]",
    "known_speaker_references[]",
)
OPENAI_FORM = (
    "file",
    "model",
    "language",
    "prompt",
    "temperature",
    "response_format",
    "timestamp_granularities[]",
    "stream",
    "include[]",
    CHUNKING,
    *_DIARIZATION,
)
NATIVE_OPTIONS = (
    "language",
    "prompt",
    "temperature",
    "word_timestamps",
    "channel",
    "stream",
    *_DIARIZATION,
)

# --- examples ------------------------------------------------------------------------------

JFK = (
    "And so my fellow Americans, ask not what your country can do for you, ask what you can "
    "do for your country."
)


def _jfk() -> Transcript:
    """jfk.flac's transcript, as the examples show it (in two segments, two words each)."""
    halves = (
        (0.0, 7.6, " And so my fellow Americans, ask not what your country can do for you,"),
        (7.6, 11.0, " ask what you can do for your country."),
    )
    return Transcript(
        JFK,
        "en",
        11.0,
        tuple(
            Segment(
                start,
                end,
                text,
                avg_logprob=-0.33,
                no_speech_prob=0.01,
                compression_ratio=1.3,
                temperature=0.0,
                tokens=(50364, 400),
                words=tuple(
                    Word(word, start + 0.3 * n, start + 0.3 * (n + 1), 0.9)
                    for n, word in enumerate(text.split()[:2])
                ),
            )
            for start, end, text in halves
        ),
    )


EXAMPLE = _jfk()


def rendered(response_format: str, **options: Any) -> Any:
    """`EXAMPLE` as the gateway writes it in `response_format` (JSON parsed)."""
    body, content_type = render(EXAMPLE, response_format, **options)
    return json.loads(body) if content_type == JSON else body


def _events(*events: dict[str, Any]) -> str:
    """Server-sent events as the gateway writes them."""
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events)


def example(value: Any, summary: str) -> Schema:
    return {"summary": summary, "value": value}


def refused(parse: Callable[[MultiDictProxy[str]], object], fields: dict[str, str]) -> Schema:
    """The error body the gateway answers a form of `fields` with (its parser's refusal)."""
    try:
        parse(MultiDictProxy(MultiDict(fields)))
    except ApiError as exc:
        return exc.body()
    raise ValueError(f"{fields} are not refused")


# an upload's `model` not served, when tiny.en is
UNKNOWN_MODEL = model_not_found("whisper-2", ServedModel("tiny.en", multilingual=False)).body()


# --- responses -----------------------------------------------------------------------------


def _media(schema: Schema, examples: dict[str, Schema] | None = None) -> Schema:
    return {"schema": schema, **({"examples": examples} if examples else {})}


def _response(description: str, content: dict[str, Schema], *headers: str) -> Schema:
    return {
        "description": description,
        "headers": {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
        | {REQUEST_ID_HEADER: {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}},
        "content": content,
    }


# The errors each kind of route can answer: status, then the codes (docs/http-api.md#errors)
UPLOAD_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "invalid_audio",
        "invalid_value",
        "missing_file",
        "field_too_large",
        "too_many_fields",
        "invalid_request",
    ),
    401: ("invalid_api_key",),
    408: ("upload_timeout",),
    413: ("file_too_large", "audio_too_long", "fields_too_large"),
    415: ("unsupported_file_type",),
    429: ("too_many_refused_uploads",),
    500: ("internal_error", "model_error"),
    503: ("model_unavailable", "server_busy"),
}
_RETRY_STATUSES = (429, 500, 503)


def errors(
    codes: dict[int, tuple[str, ...]], examples: dict[int, dict[str, Schema]] | None = None
) -> dict[str, Schema]:
    """An error response per status, naming its codes; 429 and 5xx say when to retry."""
    examples = examples or {}
    return {
        str(status): _response(
            "error: " + ", ".join(f"`{code}`" for code in status_codes),
            {JSON: _media(ref("Error"), examples.get(status))},
            *(["Retry-After"] if status in _RETRY_STATUSES else []),
        )
        for status, status_codes in sorted(codes.items())
    }


def _with(
    codes: dict[int, tuple[str, ...]], more: dict[int, tuple[str, ...]]
) -> dict[int, tuple[str, ...]]:
    """`codes` and `more` codes, status by status."""
    return {
        status: (*codes.get(status, ()), *more.get(status, ()))
        for status in sorted(codes.keys() | more.keys())
    }


# --- operations ----------------------------------------------------------------------------


def _form(
    fields: Iterable[str],
    overrides: dict[str, Schema] | None = None,
    examples: dict[str, Schema] | None = None,
) -> Schema:
    properties = {name: (overrides or {}).get(name, FIELDS[name]) for name in fields}
    schema = {"type": "object", "properties": properties, "required": ["file"]}
    return {"multipart/form-data": _media(schema, examples)}


def _openai_upload(operation_id: str, summary: str, description: str, task: str) -> Schema:
    translate = task == "translate"
    parse = translation_request if translate else openai_request
    formats = RESPONSE_FORMATS if translate else (*RESPONSE_FORMATS, DIARIZED_JSON)
    request_examples = {
        "jfk_json": example({"file": "jfk.flac", "model": ALIAS}, "the text, as JSON"),
        "jfk_srt": example({"file": "jfk.flac", "response_format": "srt"}, "SubRip subtitles"),
        "jfk_vtt": example({"file": "jfk.flac", "response_format": "vtt"}, "WebVTT subtitles"),
        "jfk_text": example({"file": "jfk.flac", "response_format": "text"}, "plain text"),
        "jfk_verbose": example(
            {
                "file": "jfk.flac",
                "response_format": "verbose_json",
                "timestamp_granularities[]": ["segment", "word"],
            },
            "segments and words with their times",
        ),
        "jfk_stream": example({"file": "jfk.flac", "stream": True}, "server-sent events"),
        "unknown_model": example({"file": "jfk.flac", "model": "whisper-2"}, "a model not served"),
        "bad_format": example({"file": "jfk.flac", "response_format": "docx"}, "a bad option"),
    }
    if not translate:
        request_examples["jfk_diarized"] = example(
            {"file": "jfk.flac", "response_format": DIARIZED_JSON}, "who spoke when"
        )
    heard = replace(EXAMPLE, language="de") if translate else EXAMPLE
    json_examples = {
        "jfk_json": example(rendered("json"), "json"),
        "jfk_verbose": example(
            verbose_json(heard, set(TIMESTAMP_GRANULARITIES), task),
            "verbose_json, both granularities",
        ),
    }
    if not translate:
        json_examples["jfk_diarized"] = example(
            diarized_json(EXAMPLE, [SpeakerSegment("A", item) for item in EXAMPLE.segments]),
            "diarized_json: one speaker",
        )
    stream = _events(
        {"type": "transcript.text.delta", "delta": EXAMPLE.segments[0].text.strip()},
        {"type": "transcript.text.delta", "delta": EXAMPLE.segments[1].text},
        {"type": "transcript.text.done", "text": JFK, "usage": usage(EXAMPLE.duration)},
    )
    codes = _with(UPLOAD_ERRORS, {404: ("model_not_found",)})
    if translate:
        codes = _with(codes, {400: ("model_not_multilingual",)})
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": ["OpenAI"],
        "requestBody": {
            "required": True,
            "content": _form(
                OPENAI_FORM,
                {"response_format": {**FIELDS["response_format"], "enum": formats}},
                request_examples,
            ),
        },
        "responses": {
            "200": _response(
                "the transcript in `response_format`, or events with `stream=true`",
                {
                    JSON: _media(
                        # the richest first: generated clients take the first that parses
                        {
                            "oneOf": [
                                ref("TranscriptionVerboseJson"),
                                *([] if translate else [ref("TranscriptionDiarizedJson")]),
                                ref("TranscriptionJson"),
                            ]
                        },
                        json_examples,
                    ),
                    PLAIN: _media(
                        {"type": "string", "description": "`text`: the text; `srt`: SubRip"},
                        {
                            "jfk_text": example(rendered("text"), "text"),
                            "jfk_srt": example(rendered("srt"), "srt"),
                        },
                    ),
                    VTT: _media({"type": "string"}, {"jfk_vtt": example(rendered("vtt"), "vtt")}),
                    EVENT_STREAM: _media(
                        ref("TranscriptionStreamEvent"), {"jfk_stream": example(stream, "stream")}
                    ),
                },
            ),
            **errors(
                codes,
                {
                    400: {
                        "bad_format": example(
                            refused(parse, {"response_format": "docx"}), "a bad option"
                        )
                    },
                    404: {"unknown_model": example(UNKNOWN_MODEL, "a model not served")},
                },
            ),
        },
    }


def _native_upload(operation_id: str) -> Schema:
    transcript = EXAMPLE.to_json()
    for segment in transcript["segments"]:
        del segment["words"]  # without word_timestamps
    stream = _events(
        *(
            {"type": "progress", "processed": item.end, "duration": 11.0, "delta": item.text}
            for item in EXAMPLE.segments
        ),
        {"type": "done", "transcript": transcript},
    )
    # request examples: name -> (summary, query parameters); the file is jfk.flac
    options: dict[str, tuple[str, dict[str, object]]] = {
        "jfk": ("segments with their times", {}),
        "jfk_words": ("and words", {"word_timestamps": True}),
        "jfk_progress": ("progress events", {"stream": True}),
        "bad_temperature": ("a bad option", {"temperature": 2}),
    }
    # Swagger UI fills a parameter in with its first example unless it has a default: only
    # parameters with defaults have examples that differ from them

    def parameter(name: str) -> Schema:
        examples = {
            key: example(query[name], summary)
            for key, (summary, query) in options.items()
            if name in query
        }
        if name == "prompt":
            examples["raw_body"] = example("ComfyUI", "a name the model should expect")
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": FIELDS[name],
            **({"examples": examples} if examples else {}),
        }

    return {
        "operationId": operation_id,
        "summary": "Transcribe a file: the gateway's own JSON",
        "description": "The file as multipart field `file` or as the raw body; the options as "
        "query parameters (or, with a multipart body, as its fields). `/transcribe` and "
        "`/upload` are the same route.",
        "tags": ["Gateway"],
        "parameters": [parameter(name) for name in NATIVE_OPTIONS],
        "requestBody": {
            "required": True,
            "content": {
                **_form(
                    ["file"],
                    examples={
                        key: example({"file": "jfk.flac"}, summary)
                        for key, (summary, _) in options.items()
                    },
                ),
                "application/octet-stream": _media(
                    FIELDS["file"],
                    {
                        "raw_body": example(
                            "hotwords.mp3", "the file as the body, options in the query"
                        )
                    },
                ),
            },
        },
        "responses": {
            "200": _response(
                "the transcript, or events with `stream=true`",
                {
                    JSON: _media(
                        ref("Transcript"),
                        {
                            "jfk": example(transcript, "segments"),
                            "jfk_words": example(EXAMPLE.to_json(), "segments with words"),
                            "raw_body": example(
                                {
                                    "text": "Then you go into your ComfyUI folder again in the "
                                    "ComfyUI",
                                    "language": "en",
                                    "duration": 4.0,
                                    "segments": [],
                                },
                                "a raw body (segments left out)",
                            ),
                        },
                    ),
                    EVENT_STREAM: _media(
                        ref("ProgressEvent"), {"jfk_progress": example(stream, "progress")}
                    ),
                },
            ),
            **errors(
                UPLOAD_ERRORS,
                {
                    400: {
                        "bad_temperature": example(
                            refused(native_request, {"temperature": "2"}), "a bad option"
                        )
                    }
                },
            ),
        },
    }


def _get(
    operation_id: str,
    summary: str,
    tag: str,
    content: dict[str, Schema],
    error_codes: dict[int, tuple[str, ...]] | None = None,
    *,
    description: str = "",
    parameters: list[Schema] | None = None,
    error_examples: dict[int, dict[str, Schema]] | None = None,
) -> Schema:
    operation: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = {
        "200": _response(summary, content),
        **errors(error_codes or {}, error_examples),
    }
    return operation


def _path_name(name: str, description: str, examples: dict[str, Schema]) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
        "examples": examples,
    }


def _file(description: str) -> dict[str, Schema]:
    return {ANY_FILE: _media({"type": "string", "description": description})}


def _paths() -> dict[str, Schema]:
    model = {"id": "tiny.en", "object": "model", "created": 1796400000, "owned_by": "hermes"}
    model_errors: dict[int, tuple[str, ...]] = {
        401: ("invalid_api_key",),
        500: ("model_error",),
        503: ("model_unavailable",),
    }
    return {
        "/v1/audio/transcriptions": {
            "post": _openai_upload(
                "createTranscription",
                "Transcribe a file, as OpenAI's API",
                "OpenAI's transcription API: official clients work unchanged.",
                "transcribe",
            )
        },
        "/v1/audio/translations": {
            "post": _openai_upload(
                "createTranslation",
                "Translate a file's speech into English, as OpenAI's API",
                "Needs multilingual weights: English-only ones (`tiny.en`) answer 400 "
                "`model_not_multilingual`. The other fields are read as on transcriptions.",
                "translate",
            )
        },
        "/v1/models": {
            "get": _get(
                "listModels",
                "The served weights and their alias",
                "OpenAI",
                {
                    JSON: _media(
                        ref("ModelList"),
                        {
                            "models": example(
                                {"object": "list", "data": [model, {**model, "id": ALIAS}]},
                                "tiny.en served",
                            )
                        },
                    )
                },
                model_errors,
            )
        },
        "/v1/models/{model}": {
            "get": _get(
                "retrieveModel",
                "One model: the served weights or their alias",
                "OpenAI",
                {JSON: _media(ref("Model"), {"alias": example({**model, "id": ALIAS}, ALIAS)})},
                _with(model_errors, {404: ("model_not_found",)}),
                parameters=[
                    _path_name(
                        "model",
                        "the served weights or `whisper-1`",
                        {
                            "alias": example(ALIAS, "the alias"),
                            "unknown_model": example("whisper-2", "not served"),
                        },
                    )
                ],
                error_examples={404: {"unknown_model": example(UNKNOWN_MODEL, "not served")}},
            )
        },
        "/transcribe": {"post": _native_upload("transcribe")},
        "/upload": {"post": _native_upload("upload")},
        "/healthz": {
            "get": _get(
                "healthz",
                "The process is alive",
                "Operations",
                {JSON: _media(ref("Health"), {"ok": example({"status": "ok"}, "alive")})},
            )
        },
        "/readyz": {
            "get": _get(
                "readyz",
                "A Triton replica serves the model",
                "Operations",
                {
                    JSON: _media(
                        ref("Ready"),
                        {
                            "ready": example(
                                {
                                    "status": "ready",
                                    "model": "whisper",
                                    "backend": "Triton at 127.0.0.1:8001",
                                    "replicas": [
                                        {
                                            "address": "127.0.0.1:8001",
                                            "healthy": True,
                                            "outstanding": 0,
                                            "dispatched": 12,
                                            "failures": 0,
                                            "wake_ups": 1,
                                        }
                                    ],
                                },
                                "with a key (or keys off)",
                            )
                        },
                    )
                },
                {503: ("model_unavailable",)},
            )
        },
        "/metrics": {
            "get": _get(
                "metrics",
                "The gateway's Prometheus metrics",
                "Operations",
                {
                    "text/plain": _media(
                        {"type": "string"},
                        {"scrape": example("# HELP hermes_streams_open ...\n", "text format")},
                    ),
                    "application/openmetrics-text": _media({"type": "string"}),
                },
                {401: ("invalid_api_key",)},
                description="Prometheus' text format, or OpenMetrics when `Accept` asks for "
                "`application/openmetrics-text`.",
            )
        },
        "/": {
            "get": _get(
                "livePage",
                "The live microphone page",
                "Pages",
                {HTML: _media({"type": "string"})},
            )
        },
        "/static/{name}": {
            "get": _get(
                "staticFile",
                "A file of the pages",
                "Pages",
                _file("the file"),
                {404: ("not_found",)},
                parameters=[
                    _path_name(
                        "name", "a file name", {"worklet": example("pcm-worklet.js", "a script")}
                    )
                ],
            )
        },
        "/docs": {
            "get": _get(
                "docsPage",
                "This document, interactive (Swagger UI)",
                "Pages",
                {HTML: _media({"type": "string"})},
            )
        },
        "/docs/{name}": {
            "get": _get(
                "docsAsset",
                "A file of the docs page (Swagger UI's, served from its Python package)",
                "Pages",
                _file("the file"),
                {404: ("not_found",)},
                parameters=[
                    _path_name(
                        "name", "a file name", {"stylesheet": example("swagger-ui.css", "CSS")}
                    )
                ],
            )
        },
        "/openapi.json": {
            "get": _get(
                "openapiDocument",
                "This document",
                "Pages",
                {JSON: _media({"type": "object", "description": "OpenAPI 3.1"})},
            )
        },
        ASYNCAPI_PATH: {
            "get": _get(
                "asyncapiDocument",
                "The WebSocket protocols (`/stream-audio`, `/v1/realtime`)",
                "Pages",
                {JSON: _media({"type": "object", "description": "AsyncAPI 3.0"})},
            )
        },
    }


def document(public: Iterable[str]) -> Schema:
    """The whole document; the routes in `public` need no API key even when keys are on."""
    paths = _paths()
    public = set(public)
    for path, operations in paths.items():
        for operation in operations.values():
            optional: list[dict[str, list[str]]] = [{}] if path in public else []
            operation["security"] = [*optional, {SECURITY_SCHEME: []}]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "hermes",
            "version": "0.1.0",
            "summary": "Speech to text: OpenAI Whisper on NVIDIA Triton, behind an aiohttp gateway",
            "description": (
                "OpenAI's transcription, translation and models APIs, the gateway's own "
                "transcription JSON, probes and metrics. Errors are JSON in OpenAI's shape "
                "with the request's id (`X-Request-Id`). With API keys on, every route but the "
                "probes, the pages and these documents needs `Authorization: Bearer KEY`. "
                f"The live WebSockets `/stream-audio` and `/v1/realtime` are in `{ASYNCAPI_PATH}` "
                "(AsyncAPI 3.0)."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "OpenAI", "description": "OpenAI's API: its SDKs work unchanged"},
            {"name": "Gateway", "description": "the gateway's own transcription JSON"},
            {"name": "Operations", "description": "probes and metrics"},
            {"name": "Pages", "description": "the browser pages and these documents"},
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "headers": {
                REQUEST_ID_HEADER: {
                    "description": "the request's id (the caller's, cleaned, or a new one)",
                    "schema": {"type": "string"},
                },
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "schema": {"type": "integer"},
                },
            },
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key, when the gateway has keys (`api_keys_file`); "
                    "off by default",
                }
            },
        },
        "x-asyncapi": ASYNCAPI_PATH,
    }
