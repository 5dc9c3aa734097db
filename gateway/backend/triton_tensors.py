"""The tensors of the Triton model `whisper`, on the client side.

`build_inputs` turns one window and its `TranscribeOptions` into Triton inputs and
`parse_outputs` turns the reply back into a `WindowResult`. Both work with `tritonclient.grpc`
and `tritonclient.grpc.aio`, whose `InferInput` classes are the same.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import numpy as np
import tritonclient.grpc as grpcclient

from gateway.core.contract import AsrFailed, TranscribeOptions, WindowResult
from gateway.core.transcript import Segment

MODEL_NAME = "whisper"
OUTPUTS = ("TEXT", "SEGMENTS", "LANGUAGE")


class InferInputFactory(Protocol):
    def __call__(self, name: str, shape: list[int], datatype: str) -> Any: ...


def _string_input(factory: InferInputFactory, name: str, value: str) -> Any:
    tensor = factory(name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[value.encode("utf-8")]], dtype=np.object_))
    return tensor


def build_inputs(
    audio: np.ndarray,
    options: TranscribeOptions,
    factory: InferInputFactory = grpcclient.InferInput,
) -> list[Any]:
    """Inputs for one request of one window (batch dimension 1)."""
    samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
    audio_input = factory("AUDIO", list(samples.shape), "FP32")
    audio_input.set_data_from_numpy(samples)
    inputs = [audio_input, _string_input(factory, "TASK", options.task)]
    if options.language:
        inputs.append(_string_input(factory, "LANGUAGE", options.language))
    if options.prompt:
        inputs.append(_string_input(factory, "PROMPT", options.prompt))
    if options.low_latency or options.draft:
        # every step sends DRAFT, an empty list when it has none: Triton's dynamic batcher
        # puts only requests with the same inputs in one execution (4 streams on a 1 s beat:
        # 112 executions instead of 65 when only steps with a draft sent it)
        inputs.append(_string_input(factory, "DRAFT", draft_json(options.draft)))
    temperature = factory("TEMPERATURE", [1, 1], "FP32")
    temperature.set_data_from_numpy(np.array([[options.temperature]], dtype=np.float32))
    word_timestamps = factory("WORD_TIMESTAMPS", [1, 1], "BOOL")
    word_timestamps.set_data_from_numpy(np.array([[options.word_timestamps]], dtype=bool))
    inputs += [temperature, word_timestamps]
    # switches are sent only when on: a model without one of these inputs serves the rest
    for name, on in (
        ("WORD_TIMES_ONLY", options.word_times_only),
        ("LOGPROBS", options.logprobs),
        ("LOW_LATENCY", options.low_latency),
        ("SHORT_CONTEXT", options.short_context),
    ):
        if on:
            switch = factory(name, [1, 1], "BOOL")
            switch.set_data_from_numpy(np.array([[True]], dtype=bool))
            inputs.append(switch)
    return inputs


def draft_json(segments: tuple[Segment, ...]) -> str:
    """The model's DRAFT input: of each segment what the decode wrote (its timestamps, its
    tokens, and whether a timestamp closed it)."""
    return json.dumps(
        [
            {
                "start": start,
                "end": end,
                "tokens": list(segment.tokens),
                "complete": segment.complete,
            }
            for segment in segments
            for start, end in [segment.timestamps or (segment.start, segment.end)]
        ]
    )


def required_output(result: Any, name: str) -> np.ndarray:
    """Output `name` of a model's reply (an `InferResult`); a reply without it is the model's
    failure (`AsrFailed`)."""
    array = result.as_numpy(name)
    if array is None or array.size == 0:
        raise AsrFailed(f"the model's reply has no {name}")
    return array


def _first_string(result: Any, name: str) -> str:
    value = required_output(result, name).reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def parse_outputs(result: Any) -> WindowResult:
    """The model's reply (an `InferResult`) as typed segments. A reply without an output or
    with segments that do not parse is the model's fault (`AsrFailed`): seen from a Triton
    whose Python backend crashed under load while requests were in flight."""
    try:
        segments = json.loads(_first_string(result, "SEGMENTS"))
        return WindowResult(
            text=_first_string(result, "TEXT"),
            language=_first_string(result, "LANGUAGE"),
            segments=tuple(Segment.from_json(item) for item in segments),
        )
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise AsrFailed(f"the model's reply is malformed: {exc!r}") from exc
