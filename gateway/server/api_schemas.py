"""JSON Schemas of what the gateway answers, for its OpenAPI document (`openapi.py`): OpenAI's
transcription bodies and stream events, the gateway's own transcript and progress events, the
models API, the probes and the error shape.

Objects are closed (`additionalProperties: false`): a field the code adds without documenting
it fails the tests that check every answer against these schemas.
"""

from __future__ import annotations

from typing import Any

from gateway.core.diarization import MAX_SPEAKERS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def closed(properties: dict[str, Schema], *optional: str, description: str = "") -> Schema:
    """An object with exactly these properties, all required but the `optional` ones."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def const(value: str) -> Schema:
    """One string: an enum of one, as OpenAI's document writes it (client generators handle
    that better than JSON Schema's `const`)."""
    return {"type": "string", "enum": [value]}


def seconds(description: str) -> Schema:
    return {"type": "number", "minimum": 0, "description": description}


TEXT = {"type": "string"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
TOKENS = {"type": "array", "items": INTEGER, "description": "Whisper's token ids"}


def _schemas() -> dict[str, Schema]:
    speaker = {
        "type": "string",
        "description": f"A, B, ... (at most {MAX_SPEAKERS}) in order of first appearance, or "
        "the name of a matching `known_speaker_names[]` entry",
    }
    segment_scores = {
        "temperature": {**NUMBER, "description": "the temperature of the decode kept"},
        "avg_logprob": NUMBER,
        "compression_ratio": NUMBER,
        "no_speech_prob": NUMBER,
    }
    word = closed(
        {
            "word": TEXT,
            "start": seconds("from the start of the file"),
            "end": seconds("from the start of the file"),
            "probability": {"type": "number", "minimum": 0, "maximum": 1},
        }
    )
    return {
        "ErrorDetail": closed(
            {
                "message": {**TEXT, "description": "what is wrong, in words"},
                "type": {"enum": ["invalid_request_error", "server_error"]},
                "code": {**TEXT, "description": "machine-readable: `invalid_audio`, ..."},
                "param": {**TEXT, "description": "the request field at fault"},
                "request_id": {**TEXT, "description": "also in `X-Request-Id`"},
            },
            "param",
            "request_id",
        ),
        "Error": closed(
            {"error": ref("ErrorDetail")}, description="OpenAI's error shape, with the request's id"
        ),
        "Usage": closed(
            {"type": const("duration"), "seconds": {**INTEGER, "minimum": 0}},
            description="the audio's seconds, rounded up",
        ),
        "Logprob": closed(
            {
                "token": TEXT,
                "logprob": {"type": "number", "maximum": 0},
                "bytes": {"type": "array", "items": {**INTEGER, "minimum": 0, "maximum": 255}},
            },
            description="a text token and its log-probability (`include[]=logprobs`)",
        ),
        "Word": word,
        "TranscriptionJson": closed(
            {
                "text": TEXT,
                "logprobs": {"type": "array", "items": ref("Logprob")},
                "usage": ref("Usage"),
            },
            "logprobs",
            description="`response_format=json`",
        ),
        "TranscriptionSegment": closed(
            {
                "id": INTEGER,
                "seek": INTEGER,
                "start": seconds("from the start of the file"),
                "end": seconds("from the start of the file"),
                "text": TEXT,
                "tokens": TOKENS,
                **segment_scores,
            }
        ),
        "TranscriptionVerboseJson": closed(
            {
                "task": {"enum": ["transcribe", "translate"]},
                "language": {**TEXT, "description": "OpenAI's spelling: `english`"},
                "duration": seconds("of the audio"),
                "text": TEXT,
                "segments": {"type": "array", "items": ref("TranscriptionSegment")},
                "words": {"type": "array", "items": ref("Word")},
                "usage": ref("Usage"),
            },
            "segments",
            "words",
            description="`response_format=verbose_json`: `segments` with the `segment` "
            "granularity, `words` with `word`",
        ),
        "DiarizedSegment": closed(
            {
                "type": const("transcript.text.segment"),
                "id": {**TEXT, "description": "`seg_0`, `seg_1`, ..."},
                "start": seconds("from the start of the file"),
                "end": seconds("from the start of the file"),
                "text": TEXT,
                "speaker": speaker,
            }
        ),
        "TranscriptionDiarizedJson": closed(
            {
                "task": const("transcribe"),
                "duration": seconds("of the audio"),
                "text": TEXT,
                "segments": {"type": "array", "items": ref("DiarizedSegment")},
                "usage": ref("Usage"),
            },
            description="`response_format=diarized_json`: who spoke when",
        ),
        "TranscriptTextDelta": closed(
            {
                "type": const("transcript.text.delta"),
                "delta": {**TEXT, "description": "the text of the windows just finished"},
                "logprobs": {"type": "array", "items": ref("Logprob")},
            },
            "logprobs",
        ),
        "TranscriptTextDone": closed(
            {
                "type": const("transcript.text.done"),
                "text": {**TEXT, "description": "the whole text: the deltas joined"},
                "logprobs": {"type": "array", "items": ref("Logprob")},
                "usage": ref("Usage"),
            },
            "logprobs",
        ),
        "StreamError": closed(
            {"type": const("error"), "error": ref("ErrorDetail")},
            description="a failure after the events began: the stream's last event",
        ),
        "TranscriptionStreamEvent": {
            "oneOf": [
                ref("TranscriptTextDelta"),
                ref("DiarizedSegment"),
                ref("TranscriptTextDone"),
                ref("StreamError"),
            ],
            "description": "`stream=true`: each event is a line `data: <JSON>` and a blank "
            "line. A `transcript.text.delta` as windows finish (in file order), with "
            "`diarized_json` a `transcript.text.segment` per segment after the last delta, "
            "then `transcript.text.done`; or `error` last.",
        },
        "Segment": closed(
            {
                "id": INTEGER,
                "start": seconds("from the start of the file"),
                "end": seconds("from the start of the file"),
                "text": {**TEXT, "description": "with Whisper's leading space"},
                "tokens": TOKENS,
                **segment_scores,
                "words": {
                    "type": "array",
                    "items": ref("Word"),
                    "description": "with `word_timestamps=true`",
                },
                "speaker": {
                    **speaker,
                    "description": f"with `diarize=true`: {speaker['description']}",
                },
            },
            "words",
            "speaker",
        ),
        "Transcript": closed(
            {
                "text": TEXT,
                "language": {**TEXT, "description": "the language's code: `en`"},
                "duration": seconds("of the audio"),
                "segments": {"type": "array", "items": ref("Segment")},
                "speakers": {
                    "type": "array",
                    "items": TEXT,
                    "description": "with `diarize=true`: every speaker named in `segments`",
                },
            },
            "speakers",
            description="the gateway's own JSON (`/transcribe`, `/upload`)",
        ),
        "Progress": closed(
            {
                "type": const("progress"),
                "processed": seconds("of the audio transcribed so far"),
                "duration": seconds("of the whole audio"),
                "delta": {**TEXT, "description": "the text of the windows just finished"},
            }
        ),
        "Done": closed({"type": const("done"), "transcript": ref("Transcript")}),
        "ProgressEvent": {
            "oneOf": [ref("Progress"), ref("Done"), ref("StreamError")],
            "description": "`stream=true`: each event is a line `data: <JSON>` and a blank "
            "line: `progress` as windows finish, then `done` with the transcript, or `error`.",
        },
        "Model": closed(
            {
                "id": {**TEXT, "description": "the served weights (`tiny.en`) or `whisper-1`"},
                "object": const("model"),
                "created": {**INTEGER, "description": "when this gateway first saw them served"},
                "owned_by": const("hermes"),
            }
        ),
        "ModelList": closed(
            {"object": const("list"), "data": {"type": "array", "items": ref("Model")}}
        ),
        "Health": closed({"status": const("ok")}),
        "Ready": closed(
            {
                "status": const("ready"),
                "model": TEXT,
                "backend": TEXT,
                "replicas": {
                    "type": "array",
                    "items": closed(
                        {
                            "address": TEXT,
                            "healthy": {"type": "boolean"},
                            "outstanding": INTEGER,
                            "dispatched": INTEGER,
                            "failures": INTEGER,
                            "wake_ups": INTEGER,
                        }
                    ),
                },
            },
            "model",
            "backend",
            "replicas",
            description="where the model runs and the replicas' counters only for a caller "
            "with a key when keys are on",
        ),
    }


SCHEMAS = _schemas()
