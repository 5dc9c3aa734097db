"""The gateway's WebSockets as an AsyncAPI 3.0 document, served at `GET /asyncapi.json`: the
live protocol of `/stream-audio` and OpenAI's Realtime transcription sessions on
`/v1/realtime`, each message with its payload.

OpenAPI has no way to describe messages over a WebSocket; AsyncAPI is the standard that does,
and its generators make clients from it. The message by message reference, with what each
field means in detail, is docs/websocket-protocol.md and docs/realtime.md.
"""

from __future__ import annotations

from gateway.modes.stream_input import (
    ENCODINGS,
    MAX_CHANNELS,
    MAX_HOTWORD_CHARS,
    MAX_HOTWORDS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
)
from gateway.server.api_schemas import Schema, closed, const

ASYNCAPI_VERSION = "3.0.0"
NUMBER = {"type": "number"}
TEXT = {"type": "string"}
TOKEN = {"type": "string", "description": "the API key, where no header can be sent"}


def _message(name: str, summary: str, payload: Schema, content_type: str = "") -> Schema:
    message = {"name": name, "summary": summary, "payload": payload}
    if content_type:
        message["contentType"] = content_type
    return message


def _event(
    kind: str, summary: str, optional: dict[str, Schema] | None = None, **fields: Schema
) -> Schema:
    """A Realtime event: its `type`, an optional `event_id`, its fields and the `optional`
    ones (further fields are OpenAI's and may come: see docs/realtime.md)."""
    return _message(
        kind,
        summary,
        {
            "type": "object",
            "properties": {"type": const(kind), "event_id": TEXT, **fields, **(optional or {})},
            "required": ["type", *fields],
        },
    )


def _stream_audio() -> tuple[dict[str, Schema], dict[str, Schema]]:
    """(what the client sends, what the gateway answers) on /stream-audio."""
    sent = {
        "config": _message(
            "config",
            "optional, before the first audio frame; every field optional",
            closed(
                {
                    "type": const("config"),
                    "language": TEXT,
                    "prompt": TEXT,
                    "hotwords": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": MAX_HOTWORD_CHARS},
                        "maxItems": MAX_HOTWORDS,
                    },
                    "encoding": {"enum": list(ENCODINGS), "default": "pcm_s16le"},
                    "sample_rate": {
                        "type": "integer",
                        "minimum": MIN_SAMPLE_RATE,
                        "maximum": MAX_SAMPLE_RATE,
                        "default": 16000,
                    },
                    "channels": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_CHANNELS,
                        "default": 1,
                    },
                    "speech_events": {"type": "boolean", "default": False},
                    "diarize": {
                        "type": "boolean",
                        "default": False,
                        "description": "a `speaker` on each final",
                    },
                },
                "language",
                "prompt",
                "hotwords",
                "encoding",
                "sample_rate",
                "channels",
                "speech_events",
                "diarize",
            ),
        ),
        "audio": _message(
            "audio",
            "a binary frame: whole samples in the configured encoding, interleaved",
            {"type": "string", "format": "binary"},
            "application/octet-stream",
        ),
        "stop": _message(
            "stop", "end of audio: the rest is flushed", closed({"type": const("stop")})
        ),
    }
    stretch = {"start": NUMBER, "end": NUMBER}
    answered = {
        "partial": _message(
            "partial",
            "the unconfirmed tail, replacing the previous one",
            closed({"type": const("partial"), "text": TEXT}),
        ),
        "final": _message(
            "final",
            "committed text, never revised; seconds from the stream's start",
            closed(
                {
                    "type": const("final"),
                    "text": TEXT,
                    **stretch,
                    "speaker": {"type": "string", "description": "with diarize: A, B, ..."},
                },
                "speaker",
            ),
        ),
        "skipped": _message(
            "skipped",
            "audio the model never heard",
            closed(
                {
                    "type": const("skipped"),
                    **stretch,
                    "reason": {
                        "enum": ["overload", "model_unavailable", "model_error", "rejected"]
                    },
                }
            ),
        ),
        "done": _message(
            "done", "after stop: everything is final", closed({"type": const("done")})
        ),
        "error": _message(
            "error",
            "something was wrong; the session goes on",
            closed({"type": const("error"), "message": TEXT, "request_id": TEXT}),
        ),
        "speech_started": _message(
            "speech_started",
            "with speech_events",
            closed({"type": const("speech_started"), "start": NUMBER}),
        ),
        "speech_stopped": _message(
            "speech_stopped",
            "with speech_events",
            closed({"type": const("speech_stopped"), "end": NUMBER}),
        ),
    }
    return sent, answered


def _realtime() -> tuple[dict[str, Schema], dict[str, Schema]]:
    """(what the client sends, what the gateway answers) on /v1/realtime."""
    session = {"type": "object", "description": "the whole session (see docs/realtime.md)"}
    item: dict[str, Schema] = {"item_id": TEXT}
    transcription = {**item, "content_index": {"type": "integer"}}
    error = {"type": "object", "properties": {"type": TEXT, "code": TEXT, "message": TEXT}}
    sent = {
        "session.update": _event("session.update", "change the session", session=session),
        "transcription_session.update": _event(
            "transcription_session.update", "change the session (the older form)", session=session
        ),
        "input_audio_buffer.append": _event(
            "input_audio_buffer.append",
            "audio in the session's format",
            audio={"type": "string", "contentEncoding": "base64"},
        ),
        "input_audio_buffer.commit": _event("input_audio_buffer.commit", "end the current turn"),
        "input_audio_buffer.clear": _event("input_audio_buffer.clear", "drop uncommitted audio"),
    }
    answered = {
        "session.created": _event("session.created", "the defaults", session=session),
        "session.updated": _event("session.updated", "after session.update", session=session),
        "transcription_session.updated": _event(
            "transcription_session.updated", "after transcription_session.update", session=session
        ),
        "input_audio_buffer.speech_started": _event(
            "input_audio_buffer.speech_started",
            "speech began",
            **item,
            audio_start_ms={"type": "integer"},
        ),
        "input_audio_buffer.speech_stopped": _event(
            "input_audio_buffer.speech_stopped",
            "speech ended",
            **item,
            audio_end_ms={"type": "integer"},
        ),
        "input_audio_buffer.committed": _event(
            "input_audio_buffer.committed", "a turn ended", **item
        ),
        "input_audio_buffer.cleared": _event("input_audio_buffer.cleared", "after clear"),
        "conversation.item.input_audio_transcription.delta": _event(
            "conversation.item.input_audio_transcription.delta",
            "words agreed on, while the turn is spoken",
            **transcription,
            delta=TEXT,
        ),
        "conversation.item.input_audio_transcription.completed": _event(
            "conversation.item.input_audio_transcription.completed",
            "the turn's whole transcript",
            **transcription,
            optional={
                "speaker": {
                    "type": "string",
                    "description": "with ?diarize=true: who spoke the turn, the same label for "
                    "one voice for the whole session (hermes' own field)",
                }
            },
            transcript=TEXT,
        ),
        "conversation.item.input_audio_transcription.failed": _event(
            "conversation.item.input_audio_transcription.failed",
            "the model could not transcribe the turn",
            **transcription,
            error=error,
        ),
        "error": _event("error", "a refused event, or the model's trouble", error=error),
    }
    return sent, answered


def _channel(
    channel_id: str,
    address: str,
    description: str,
    query: Schema,
    protocol: tuple[dict[str, Schema], dict[str, Schema]],
    components: dict[str, Schema],
) -> tuple[Schema, dict[str, Schema]]:
    """A channel, its two operations (the gateway receives what clients send, and sends its
    answers) and its messages (added to `components`)."""
    sent, answered = protocol
    messages = {}
    for direction, group in (("client", sent), ("server", answered)):
        for name, message in group.items():
            key = f"{channel_id}.{direction}.{name}"
            components[key] = message
            messages[key] = {"$ref": f"#/components/messages/{key}"}

    def refs(direction: str) -> list[Schema]:
        return [
            {"$ref": f"#/channels/{channel_id}/messages/{key}"}
            for key in messages
            if key.startswith(f"{channel_id}.{direction}.")
        ]

    channel = {
        "address": address,
        "description": description,
        "messages": messages,
        "bindings": {"ws": {"method": "GET", "query": query}},
    }
    operations = {
        f"{channel_id}.receive": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": "what a client sends",
            "messages": refs("client"),
        },
        f"{channel_id}.send": {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": "what the gateway answers",
            "messages": refs("server"),
        },
    }
    return channel, operations


def document() -> Schema:
    messages: dict[str, Schema] = {}
    stream, stream_operations = _channel(
        "streamAudio",
        "/stream-audio",
        "Live audio in, text out: `partial` tails and `final` text, never revised "
        "(docs/websocket-protocol.md).",
        {"type": "object", "properties": {"token": TOKEN}},
        _stream_audio(),
        messages,
    )
    realtime, realtime_operations = _channel(
        "realtime",
        "/v1/realtime",
        "OpenAI's Realtime API, transcription sessions only (docs/realtime.md).",
        {
            "type": "object",
            "properties": {
                "intent": const("transcription"),
                "model": {"type": "string", "description": "the served weights or whisper-1"},
                "diarize": {
                    "type": "string",
                    "enum": ["true", "false"],
                    "description": "a speaker on each completed item (hermes' own)",
                },
                "token": TOKEN,
            },
            "required": ["intent"],
        },
        _realtime(),
        messages,
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "hermes live transcription",
            "version": "0.1.0",
            "description": "The gateway's WebSockets. With API keys on, an upgrade needs "
            "`Authorization: Bearer KEY` or `?token=KEY`; a browser page must come from the "
            "gateway itself or from `allowed_origins`. The HTTP routes are in /openapi.json.",
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "channels": {"streamAudio": stream, "realtime": realtime},
        "operations": {**stream_operations, **realtime_operations},
        "components": {"messages": messages},
    }
