"""`TritonPythonModel.execute`: every request of a batch gets its own answer or its own error.

Triton's `triton_python_backend_utils` exists only inside the backend's stub process, so a
small stand-in with the same names carries the requests and responses here; the transcriber
is scripted to fail on one request of the batch. The real model through the real Triton is
tested in tests/integration/test_whisper_model.py.
"""

from __future__ import annotations

import json
import sys
import types
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"


class TritonError:
    CANCELLED, INVALID_ARG, INTERNAL = "CANCELLED", "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self.message, self.code = message, code


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None) -> None:
        self.output_tensors, self.error = output_tensors or [], error

    def output(self, name: str) -> str:
        (tensor,) = [t for t in self.output_tensors if t.name == name]
        return tensor.array[0, 0].decode()


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


FINAL = 1  # TRITONSERVER_RESPONSE_COMPLETE_FINAL
ANSWERED: list[str] = []  # prompts of the requests answered, in order, across a test


class ResponseSender:
    def __init__(self, request: Request) -> None:
        self.request = request

    def send(self, response: InferenceResponse, flags: int = 0) -> None:
        assert flags == FINAL and self.request.response is None  # one answer, final
        self.request.response = response
        ANSWERED.append(self.request.prompt)


class Request:
    def __init__(self, parameters: dict | None = None, **inputs: np.ndarray) -> None:
        self.inputs = inputs
        self.request_parameters = parameters or {}
        self.cancelled = False
        self.response: InferenceResponse | None = None
        self.prompt = inputs["PROMPT"][0, 0].decode() if "PROMPT" in inputs else ""

    def is_cancelled(self) -> bool:
        return self.cancelled

    def get_response_sender(self) -> ResponseSender:
        return ResponseSender(self)

    def parameters(self) -> str:
        return json.dumps(self.request_parameters)


def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
    return Tensor(name, request.inputs[name]) if name in request.inputs else None


@pytest.fixture(scope="module")
def model_module():
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.TritonError, stand_in.InferenceResponse, stand_in.Tensor = (
        TritonError,
        InferenceResponse,
        Tensor,
    )
    stand_in.get_input_tensor_by_name = get_input_tensor_by_name
    stand_in.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL
    saved_path, saved_module = list(sys.path), sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = stand_in
    sys.path.insert(0, str(MODEL_DIR))
    try:
        import model

        yield model
    finally:
        sys.path[:] = saved_path
        if saved_module is None:
            del sys.modules["triton_python_backend_utils"]


class PoisonedTranscriber:
    """Fails any batch holding the prompt "poison"; otherwise says each request's prompt."""

    def __init__(self, model_module) -> None:
        self.result = model_module.TranscriptionResult
        self.batches: list[int] = []

    def transcribe(self, requests):
        self.batches.append(len(requests))
        if any(request.prompt == "poison" for request in requests):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [self.result(f"heard {request.prompt}", "en") for request in requests]


def request(prompt: str) -> Request:
    return Request(
        AUDIO=np.zeros((1, 16000), np.float32),
        PROMPT=np.array([[prompt.encode()]], dtype=np.object_),
    )


def answers(whisper_model, requests: list[Request]) -> list[InferenceResponse]:
    """`execute` on the batch, and each request's answer (every one answered, once)."""
    assert whisper_model.execute(requests) is None
    assert all(request.response is not None for request in requests)
    return [request.response for request in requests]


class WakeUpCounts:
    """The model's wake-up metrics, as (requests, alone) per execution that held any."""

    def __init__(self) -> None:
        self.added: list[tuple[int, bool]] = []

    def add(self, wake_ups: int, *, alone: bool) -> None:
        self.added.append((wake_ups, alone))


def scripted_model(model_module, transcriber):
    whisper_model = model_module.TritonPythonModel()
    whisper_model.transcriber = transcriber
    whisper_model.wake_up_metrics = WakeUpCounts()
    whisper_model.heap = types.SimpleNamespace(working=nullcontext)
    whisper_model.multilingual = False
    whisper_model.text_tokens = 50256  # tiny.en's
    return whisper_model


def test_a_request_that_fails_the_decode_fails_alone(model_module) -> None:
    whisper_model = scripted_model(model_module, PoisonedTranscriber(model_module))
    first, poisoned, third = answers(
        whisper_model, [request("one"), request("poison"), request("three")]
    )
    assert (first.error, third.error) == (None, None)
    assert (first.output("TEXT"), third.output("TEXT")) == ("heard one", "heard three")
    assert poisoned.error.code == TritonError.INTERNAL
    assert "illegal memory access" in poisoned.error.message
    # the batch once, then each request alone
    assert whisper_model.transcriber.batches == [3, 1, 1, 1]


class HangUpTranscriber(PoisonedTranscriber):
    """The client of the request prompted "hang up" cancels it while the batch decodes."""

    def __init__(self, model_module, hanging_up: Request) -> None:
        super().__init__(model_module)
        self.hanging_up = hanging_up

    def transcribe(self, requests):
        for item in requests:
            # the decode loop is handed the Triton request's own check, per row
            assert item.cancelled() is False
        self.hanging_up.cancelled = True
        assert [item.cancelled() for item in requests] == [
            item.prompt == "hang up" for item in requests
        ]
        return super().transcribe(requests)


def test_a_request_cancelled_during_its_decode_gets_cancelled_not_text(model_module) -> None:
    hanging_up = request("hang up")
    whisper_model = scripted_model(model_module, HangUpTranscriber(model_module, hanging_up))
    first, cancelled, third = answers(whisper_model, [request("one"), hanging_up, request("three")])
    assert (first.output("TEXT"), third.output("TEXT")) == ("heard one", "heard three")
    assert cancelled.error.code == TritonError.CANCELLED
    assert cancelled.output_tensors == []


def test_a_request_cancelled_while_queued_is_not_decoded(model_module) -> None:
    queued = request("gone")
    queued.cancelled = True
    transcriber = PoisonedTranscriber(model_module)
    whisper_model = scripted_model(model_module, transcriber)
    (answer,) = answers(whisper_model, [queued])
    assert answer.error.code == TritonError.CANCELLED
    assert transcriber.batches == []


class RecordingTranscriber(PoisonedTranscriber):
    """Keeps every request of every batch it decodes."""

    def __init__(self, model_module) -> None:
        super().__init__(model_module)
        self.requests: list = []

    def transcribe(self, requests):
        self.requests += requests
        return super().transcribe(requests)


@pytest.mark.parametrize(
    ("switch", "field"),
    [
        ("WORD_TIMES_ONLY", "word_times_only"),
        ("LOGPROBS", "logprobs"),
        ("SHORT_CONTEXT", "short_context"),
        ("LOW_LATENCY", "low_latency"),
    ],
)
def test_switches_are_asked_for_per_request(model_module, switch, field) -> None:
    asking = request("with")
    asking.inputs[switch] = np.array([[True]])
    transcriber = RecordingTranscriber(model_module)
    whisper_model = scripted_model(model_module, transcriber)
    answers(whisper_model, [asking, request("without")])
    asked = {item.prompt: getattr(item, field) for item in transcriber.requests}
    assert asked == {"with": True, "without": False}


def live(prompt: str) -> Request:
    step = request(prompt)
    step.inputs["LOW_LATENCY"] = np.array([[True]])
    return step


def test_live_steps_are_decoded_and_answered_before_the_batchs_file_windows(
    model_module,
) -> None:
    """A batch of two file windows and two live steps, in arrival order: the steps are decoded
    as a batch of their own and answered before the file windows are decoded at all."""
    ANSWERED.clear()
    transcriber = RecordingTranscriber(model_module)
    decoded: list[list[str]] = []

    def transcribe(requests):
        decoded.append([item.prompt for item in requests])
        assert ANSWERED == ([] if len(decoded) == 1 else ["step 1", "step 2"])
        return RecordingTranscriber.transcribe(transcriber, requests)

    transcriber.transcribe = transcribe
    batch = [request("file 1"), live("step 1"), request("file 2"), live("step 2")]
    texts = [a.output("TEXT") for a in answers(scripted_model(model_module, transcriber), batch)]
    assert texts == ["heard file 1", "heard step 1", "heard file 2", "heard step 2"]
    assert decoded == [["step 1", "step 2"], ["file 1", "file 2"]]
    assert ANSWERED == ["step 1", "step 2", "file 1", "file 2"]


def wake_up() -> Request:
    """The gateway's wake-up for Triton's batcher: a file window's inputs, one sample."""
    return Request(parameters={"wake_up": True}, AUDIO=np.zeros((1, 1), np.float32))


def test_wake_ups_are_answered_last_with_nothing_decoded(model_module) -> None:
    ANSWERED.clear()
    transcriber = RecordingTranscriber(model_module)
    whisper_model = scripted_model(model_module, transcriber)
    batch = [wake_up(), request("file 1"), live("step 1"), request("file 2")]
    first, *_ = answers(whisper_model, batch)
    assert [item.prompt for item in transcriber.requests] == ["step 1", "file 1", "file 2"]
    assert ANSWERED == ["step 1", "file 1", "file 2", ""]  # the wake-up last
    assert first.error is None
    assert [first.output(name) for name in ("TEXT", "SEGMENTS", "LANGUAGE")] == ["", "[]", ""]
    assert whisper_model.wake_up_metrics.added == [(1, False)]


def test_an_execution_of_wake_ups_alone_is_counted_as_such(model_module) -> None:
    transcriber = RecordingTranscriber(model_module)
    whisper_model = scripted_model(model_module, transcriber)
    answers(whisper_model, [wake_up(), wake_up()])
    answers(whisper_model, [request("file")])  # no wake-up: nothing counted
    assert transcriber.requests[0].prompt == "file" and len(transcriber.requests) == 1
    assert whisper_model.wake_up_metrics.added == [(2, True)]


@pytest.mark.parametrize("parameters", [{}, {"wake_up": False}, {"wake_up": "yes"}])
def test_only_the_parameter_set_true_makes_a_wake_up(model_module, parameters) -> None:
    transcriber = RecordingTranscriber(model_module)
    whisper_model = scripted_model(model_module, transcriber)
    asking = request("file")
    asking.request_parameters = parameters
    (answer,) = answers(whisper_model, [asking])
    assert answer.output("TEXT") == "heard file"
