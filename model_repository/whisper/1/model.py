"""Triton Python-backend model `whisper`: parse requests, decode them as one batch, reply.

Beside this file, importable and tested without Triton: `model_parameters.py` reads the
config's parameters, `transcriber.py` validates requests and decodes a batch of them (with
`whisper_adaptations.py` and `decoder.py`), `checkpoint.py` loads the weights from
`weights/`, written by `python -m export`. A bad request is answered with its own
INVALID_ARG error and the rest of the batch is served; the live streams' steps are decoded
and answered before the batch's file windows, and wake-up requests for Triton's batcher
(request parameter `wake_up`) after them, with nothing decoded; when a batch's decode fails,
each request is decoded again alone, so that only one that fails it gets an INTERNAL error.
A bad parameter fails the load.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkpoint import load_model, resolve_device
from heap import HeapTrimmer, keep_freed_memory
from model_parameters import ModelParameters
from phases import PHASES
from transcriber import (
    BatchTranscriber,
    InvalidRequest,
    TranscriptionRequest,
    TranscriptionResult,
    cpu_computes_bfloat16,
    make_request,
    parse_draft,
)

logger = logging.getLogger("whisper.model")

OPTIONAL_STRING_INPUTS = ("LANGUAGE", "TASK", "PROMPT", "DRAFT")


def _rows(request: Any, name: str, count: int) -> list[Any] | None:
    """Values of an optional input, one per batch row; a single row applies to all rows."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    if values.size == 1:
        return [values[0]] * count
    if values.size != count:
        raise InvalidRequest(f"{name} has {values.size} values for {count} rows of AUDIO")
    return list(values)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"string input is not valid UTF-8: {exc}") from exc
    return str(value)


def _answer(request: Any, response: Any) -> None:
    """The request's one and only response."""
    flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    request.get_response_sender().send(response, flags=flags)


def _cancelled() -> Any:
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
    )


def _wakes_up(request: Any) -> bool:
    """Whether the request only wakes Triton's batcher (request parameter `wake_up`): the
    gateway sends one after an answer while a request it sent before is still out, because
    the batcher may sleep 500 ms through the end of an execution (see config.pbtxt)."""
    return json.loads(request.parameters() or "{}").get("wake_up") is True


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class PhaseMetrics:
    """Triton's counter `hermes_model_phase_seconds_total{model, phase}`, beside its own
    `nv_inference_*` on the metrics port: the seconds the model spent in each phase of its
    batches (`phases.PHASES`)."""

    def __init__(self, model_name: str) -> None:
        self.family = pb_utils.MetricFamily(
            name="hermes_model_phase_seconds_total",
            description="Seconds the model spent in each phase of its batches",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.metrics = {
            phase: self.family.Metric(labels={"model": model_name, "phase": phase})
            for phase in PHASES
        }

    def add(self, seconds: dict[str, float]) -> None:
        for phase, value in seconds.items():
            self.metrics[phase].increment(value)

    def close(self) -> None:
        """Each metric before its family, as the Python backend requires."""
        self.metrics.clear()
        del self.family


class WakeUpMetrics:
    """Triton's counters `hermes_model_wake_up_requests_total{model}` (wake-up requests
    answered) and `hermes_model_wake_up_executions_total{model}` (executions that held
    nothing else): what to take from `nv_inference_count` and `nv_inference_exec_count` for
    the work the model did."""

    def __init__(self, model_name: str) -> None:
        self.families = [
            pb_utils.MetricFamily(
                name=f"hermes_model_wake_up_{what}_total",
                description=description,
                kind=pb_utils.MetricFamily.COUNTER,
            )
            for what, description in (
                ("requests", "Wake-up requests for Triton's batcher the model answered"),
                ("executions", "Executions of wake-up requests for Triton's batcher alone"),
            )
        ]
        self.requests, self.executions = (
            family.Metric(labels={"model": model_name}) for family in self.families
        )

    def add(self, wake_ups: int, *, alone: bool) -> None:
        self.requests.increment(wake_ups)
        if alone:
            self.executions.increment(1)

    def close(self) -> None:
        """Each metric before its family, as the Python backend requires."""
        del self.requests, self.executions
        self.families.clear()


class TritonPythonModel:
    """One instance; Triton hands `execute` every request of a dynamic batch at once."""

    def initialize(self, args: dict[str, str]) -> None:
        # a parameter the model does not know or a value it does not allow fails the load here
        parameters = ModelParameters.from_model_config(json.loads(args["model_config"]))
        keeps_freed_memory = keep_freed_memory()  # see heap.py: `self.heap` gives it back
        self.phase_metrics = PhaseMetrics(args["model_name"])
        self.wake_up_metrics = WakeUpMetrics(args["model_name"])
        if parameters.cpu_threads > 0:
            torch.set_num_threads(parameters.cpu_threads)
        loaded = load_model(
            parameters.weights,
            resolve_device(parameters.device),
            verify_sha256=parameters.verify_sha256,
            int8=parameters.use_int8(),
        )
        self.transcriber = BatchTranscriber(
            loaded.model,
            fp16=loaded.fp16,
            low_latency_bfloat16=parameters.use_low_latency_bfloat16(
                cpu_computes_bfloat16=cpu_computes_bfloat16(), int8=loaded.int8
            ),
            file_bfloat16=parameters.use_file_bfloat16(int8=loaded.int8),
            low_latency_short_context=parameters.use_low_latency_short_context(
                device_type=loaded.model.device.type
            ),
            cuda_graphs=parameters.use_cuda_graphs(),
            on_phases=self.phase_metrics.add,
        )
        pb_utils.Logger.log_info(  # in Triton's log: what this instance actually runs
            f"serving Whisper {loaded.manifest['name']} on {loaded.device}: fp16={loaded.fp16}, "
            f"int8={loaded.int8}, low_latency_bfloat16={self.transcriber.low_latency_bfloat16}, "
            f"file_bfloat16={self.transcriber.file_bfloat16}, "
            f"low_latency_short_context={self.transcriber.low_latency_short_context}, "
            f"cuda_graphs={self.transcriber.decoder.cuda_graphs}, "
            f"keeps_freed_memory={keeps_freed_memory}"
        )
        self.heap = HeapTrimmer()
        self.transcriber.warm_up()
        self.multilingual = loaded.model.is_multilingual
        self.text_tokens = self.transcriber.text_tokens

    def execute(self, requests: list[Any]) -> None:
        """Answer each request through its own response sender, the live streams' steps
        (LOW_LATENCY) first: in a batch that also holds file windows, a step's answer goes
        out when its own decode is done, not after the files' (on two CPU cores a batch of
        30 s windows takes seconds; the hostile soak's flood held live finals back so). The
        two kinds then decode as two batches. Wake-up requests are answered last, with
        empty outputs: the gateway's next one follows the last answer. Nothing is returned,
        as Triton allows when every request has been answered with the final flag."""
        wake_ups: list[Any] = []
        work: list[Any] = []
        for request in requests:
            (wake_ups if _wakes_up(request) else work).append(request)
        parsed: list[tuple[Any, list[TranscriptionRequest]]] = []
        for request in work:
            if request.is_cancelled():
                _answer(request, _cancelled())
                continue
            try:
                parsed.append((request, self._parse(request)))
            except InvalidRequest as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                _answer(request, pb_utils.InferenceResponse(error=error))
        live: list[tuple[Any, list[TranscriptionRequest]]] = []
        files: list[tuple[Any, list[TranscriptionRequest]]] = []
        for entry in parsed:
            (live if all(item.low_latency for item in entry[1]) else files).append(entry)
        for group in (live, files):
            if group:
                self._answer_batch(group)
        if wake_ups:
            # counted before the answers, so that a client that has one sees it counted
            self.wake_up_metrics.add(len(wake_ups), alone=not work)
            for request in wake_ups:
                _answer(request, self._nothing_said(request))

    def _answer_batch(self, batch: list[tuple[Any, list[TranscriptionRequest]]]) -> None:
        """Decode the batch's windows together and answer each request."""
        flat = [item for _, items in batch for item in items]
        try:
            with self.heap.working():
                results = iter(self.transcriber.transcribe(flat))
        except Exception:  # a fault in decoding must not take down the instance
            logger.exception("decoding a batch of %d windows failed; each request alone", len(flat))
            for request, items in batch:
                _answer(request, self._alone(items))
            return
        for request, items in batch:
            answers = [next(results) for _ in items]
            # a request cancelled while it was decoded got a cut-short text: not an answer
            _answer(request, _cancelled() if request.is_cancelled() else self._response(answers))

    def _alone(self, items: list[TranscriptionRequest]) -> Any:
        """One request decoded by itself, after its batch failed: a request that makes the
        decode fail gets the error, and every other request of the batch its text."""
        try:
            with self.heap.working():
                return self._response(self.transcriber.transcribe(items))
        except Exception as exc:
            logger.exception("decoding a request of %d windows failed", len(items))
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"decoding failed: {exc}", pb_utils.TritonError.INTERNAL)
            )

    def _parse(self, request: Any) -> list[TranscriptionRequest]:
        audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy()
        if audio.ndim != 2:
            raise InvalidRequest(f"AUDIO must have shape [batch, samples], got {audio.shape}")
        count = audio.shape[0]
        strings = {
            name: [_text(value) for value in values]
            if (values := _rows(request, name, count)) is not None
            else [None] * count
            for name in OPTIONAL_STRING_INPUTS
        }
        temperatures = _rows(request, "TEMPERATURE", count) or [None] * count
        word_timestamps = _rows(request, "WORD_TIMESTAMPS", count) or [False] * count
        word_times_only = _rows(request, "WORD_TIMES_ONLY", count) or [False] * count
        logprobs = _rows(request, "LOGPROBS", count) or [False] * count
        low_latency = _rows(request, "LOW_LATENCY", count) or [False] * count
        short_context = _rows(request, "SHORT_CONTEXT", count) or [False] * count
        cancelled = request.is_cancelled  # one check shared by the request's rows
        return [
            make_request(
                audio[row],
                multilingual=self.multilingual,
                language=strings["LANGUAGE"][row],
                task=strings["TASK"][row],
                prompt=strings["PROMPT"][row],
                temperature=temperatures[row],
                word_timestamps=bool(word_timestamps[row]),
                word_times_only=bool(word_times_only[row]),
                logprobs=bool(logprobs[row]),
                low_latency=bool(low_latency[row]),
                short_context=bool(short_context[row]),
                draft=parse_draft(strings["DRAFT"][row], self.text_tokens),
                cancelled=cancelled,
            )
            for row in range(count)
        ]

    def _nothing_said(self, request: Any) -> Any:
        """Empty outputs, one row per row of AUDIO."""
        rows = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy().shape[0]
        return self._response([TranscriptionResult(text="", language="")] * rows)

    @staticmethod
    def _response(results: list[TranscriptionResult]) -> Any:
        def column(values: list[str]) -> np.ndarray:
            return np.array([[value.encode("utf-8")] for value in values], dtype=np.object_)

        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("TEXT", column([result.text for result in results])),
                pb_utils.Tensor(
                    "SEGMENTS",
                    column(
                        [json.dumps(result.segments, default=_json_default) for result in results]
                    ),
                ),
                pb_utils.Tensor("LANGUAGE", column([result.language for result in results])),
            ]
        )

    def finalize(self) -> None:
        logger.info("whisper model unloading")
        self.phase_metrics.close()
        self.wake_up_metrics.close()
