"""One Triton server's `whisper` and `speaker` models over one asyncio gRPC channel.

The modes depend on `gateway.core.contract`'s protocols only, never on tritonclient; the
gateway's backend is a `gateway.backend.triton_pool.TritonPool` of these, one per replica.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException

from gateway.backend.batcher_wake_up import (
    WAKE_UP_PARAMETER,
    WAKE_UP_REQUEST_ID,
    BatcherWakeUps,
)
from gateway.backend.triton_tensors import OUTPUTS, build_inputs, parse_outputs, required_output
from gateway.core.contract import (
    AsrBusy,
    AsrError,
    AsrFailed,
    AsrInterrupted,
    AsrRejected,
    AsrUnavailable,
    Priority,
    ServedModel,
    SpeakerEmbeddings,
    TranscribeOptions,
    WindowResult,
    is_multilingual,
)

logger = logging.getLogger(__name__)

# gRPC statuses of a call that certainly did not run: the server is not there (right now),
# the model is not loaded, or Triton's queue for it is full
_NOT_RUN = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND"}
# ... and of a call that may have run before it failed: not to be sent again
_MAY_HAVE_RUN = {"StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED", "StatusCode.UNKNOWN"}
_REFUSED = {"StatusCode.INVALID_ARGUMENT"}  # the model's own verdict on the input
# What Triton's dynamic batcher says (as UNAVAILABLE) of a request its bounded queue turned
# away (config.pbtxt's priority_queue_policy): overload, not an outage
_QUEUE_REFUSALS = ("request timeout expired", "exceeds maximum queue size")
SPEAKER_MODEL = "speaker"  # the speaker-embedding model beside Whisper
_WAKE_UP_AUDIO = np.zeros(1, np.float32)  # AUDIO is required; the model reads none of it
_Window = tuple[TranscribeOptions, Priority]  # what a request to the model asked for


def _error_of(exc: InferenceServerException) -> AsrError:
    status, message = exc.status(), exc.message()
    if status == "StatusCode.UNAVAILABLE" and any(
        refusal in (message or "").lower() for refusal in _QUEUE_REFUSALS
    ):
        return AsrBusy(f"speech model busy: {message}")
    if status is None or status in _NOT_RUN:
        return AsrUnavailable(f"speech model unavailable: {message}")
    if status in _MAY_HAVE_RUN:
        return AsrInterrupted(f"speech model call interrupted: {message}")
    if status in _REFUSED:
        return AsrRejected(message)
    return AsrFailed(f"speech model failed ({status}): {message}")


def _channel_args() -> list[tuple[str, int]]:
    """tritonclient's channel defaults, but reconnecting within seconds of a server coming
    back (gRPC's own backoff grows to two minutes, a long outage after a Triton restart)."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


class TritonAsr:
    """One asyncio gRPC channel to one Triton server."""

    def __init__(self, url: str, model: str, *, timeout_s: float, ready_timeout_s: float) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.ready_timeout_s = ready_timeout_s
        self._client = grpcaio.InferenceServerClient(url, channel_args=_channel_args())
        self._outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
        self.wake_ups: BatcherWakeUps[_Window] = BatcherWakeUps(self._wake_up)

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority = Priority.FILE
    ) -> WindowResult:
        with self.wake_ups.awaiting((options, priority)):
            result = await self._infer(
                self.model,
                build_inputs(audio, options, grpcaio.InferInput),
                self._outputs,
                priority=int(priority),  # the model's two priority levels: 1 first
            )
        return parse_outputs(result)

    async def _wake_up(self, like: _Window) -> None:
        """A request the model answers at once (see `batcher_wake_up`), with the inputs and
        priority of the window `like`: Triton batches it with windows of that kind."""
        options, priority = like
        await self._infer(
            self.model,
            build_inputs(_WAKE_UP_AUDIO, options, grpcaio.InferInput),
            self._outputs,
            priority=int(priority),
            request_id=WAKE_UP_REQUEST_ID,
            parameters={WAKE_UP_PARAMETER: True},
        )

    async def embed_speakers(self, audio: np.ndarray) -> SpeakerEmbeddings:
        """The `speaker` model's window embeddings of `audio` (file priority: no stream
        waits on them)."""
        samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
        tensor = grpcaio.InferInput("AUDIO", list(samples.shape), "FP32")
        tensor.set_data_from_numpy(samples)
        result = await self._infer(
            SPEAKER_MODEL,
            [tensor],
            [grpcclient.InferRequestedOutput(n) for n in ("EMBEDDINGS", "WINDOW_STARTS")],
        )
        return SpeakerEmbeddings(
            required_output(result, "EMBEDDINGS")[0], required_output(result, "WINDOW_STARTS")[0]
        )

    async def _infer(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[Any],
        priority: int = 0,
        request_id: str = "",
        parameters: dict[str, bool] | None = None,
    ) -> Any:
        """One inference on this server (priority 0: the model's default level), its
        failure as the `AsrError` that says whose fault it was."""
        try:
            return await self._client.infer(
                model,
                inputs,
                outputs=outputs,
                priority=priority,
                client_timeout=self.timeout_s,
                request_id=request_id,
                parameters=parameters,
            )
        except InferenceServerException as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # grpc reports our own cancellation as a CANCELLED call: let it propagate
                raise asyncio.CancelledError() from exc
            raise _error_of(exc) from exc

    async def is_ready(self) -> bool:
        try:
            return bool(
                await self._client.is_model_ready(self.model, client_timeout=self.ready_timeout_s)
            )
        except InferenceServerException as exc:
            logger.info("Triton at %s not ready: %s", self.url, exc.message())
            return False

    async def served_model(self) -> ServedModel:
        """The weights this server's model serves: its config's `weights` parameter."""
        try:
            reply = await self._client.get_model_config(
                self.model, as_json=True, client_timeout=self.ready_timeout_s
            )
        except InferenceServerException as exc:
            raise AsrUnavailable(
                f"cannot read model {self.model!r}'s config at {self.url}: {exc.message()}"
            ) from exc
        parameters = reply.get("config", {}).get("parameters", {})
        weights = parameters.get("weights", {}).get("string_value")
        if not weights:
            raise AsrFailed(f"model {self.model!r} at {self.url} names no weights in its config")
        return ServedModel(weights, is_multilingual(weights))

    async def close(self) -> None:
        await self.wake_ups.close()
        await self._client.close()
