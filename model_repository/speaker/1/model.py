"""Triton Python-backend model `speaker`: speaker embeddings of 16 kHz audio, for diarization.

For each row of AUDIO the model answers the voice encoder's embedding (resemblyzer's network,
rewritten in `voice_encoder.py`) of every window of 1.6 s, one every `window_step_ms`, with
the second each window starts at (WINDOW_STARTS), and the embedding of the whole utterance as
resemblyzer's `embed_utterance` computes it (EMBEDDING). 770 ms by default: resemblyzer's own
1.3 partials a second, so the windows are also the utterance's partials, computed once (400 ms
would cost about twice as much). The audio is first raised to -30 dBFS when quieter, as
resemblyzer's preprocessing does. Every window of every request in a dynamic batch goes through
the LSTM together. A bad request is answered with its own INVALID_ARG error and the rest of the
batch is served; when a batch fails, each request is embedded again alone, so that only one
that fails gets an INTERNAL error. A bad parameter fails the load.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speaker_weights import load_encoder, resolve_device
from voice_encoder import HOP, PARTIAL_FRAMES, SAMPLE_RATE, embed_batch, normalize_volume

logger = logging.getLogger("speaker.model")

FRAME_MS = 1000 * HOP // SAMPLE_RATE  # 10


class InvalidRequest(ValueError):
    """The request cannot be embedded as sent; the message says why."""


class ParameterError(ValueError):
    """A model parameter the model does not know, or a value it does not allow."""


@dataclass(frozen=True)
class SpeakerParameters:
    weights: str = "resemblyzer"  # which export under 1/weights/ to serve
    device: str = "auto"  # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N
    cpu_threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    window_step_ms: int = 770  # a window of 1.6 s starts every this many ms (10..1600)
    max_audio_seconds: int = 600  # longer AUDIO is refused
    verify_sha256: bool = True

    @property
    def window_step_frames(self) -> int:
        return self.window_step_ms // FRAME_MS


def _whole(low: int, high: int, multiple: int = 1):
    def read(text: str) -> int | None:
        value = int(text) if text.isdigit() else None
        return (
            value if value is not None and low <= value <= high and value % multiple == 0 else None
        )

    return read


PARAMETERS = {
    "weights": (
        "a name of an export under 1/weights/",
        lambda t: t if t.strip() == t and t else None,
    ),
    "device": (
        "auto, cpu, cuda or cuda:N",
        lambda t: (
            t
            if t in ("auto", "cpu", "cuda") or (t.startswith("cuda:") and t[5:].isdigit())
            else None
        ),
    ),
    "cpu_threads": ("a whole number, 0 or more", _whole(0, 1024)),
    "window_step_ms": (
        "a multiple of 10 from 10 to 1600",
        _whole(FRAME_MS, PARTIAL_FRAMES * FRAME_MS, FRAME_MS),
    ),
    "max_audio_seconds": ("a whole number of seconds from 2 to 7200", _whole(2, 7200)),
    "verify_sha256": ("true or false", lambda t: {"true": True, "false": False}.get(t)),
}
BACKEND_PARAMETERS = frozenset({"EXECUTION_ENV_PATH", "FORCE_CPU_ONLY_INPUT_TENSORS"})


def parse_parameters(model_config: dict[str, Any]) -> SpeakerParameters:
    """The config's parameters, strictly: an unknown name or a value not allowed is refused."""
    values = {}
    for name, value in model_config.get("parameters", {}).items():
        if name in BACKEND_PARAMETERS:
            continue
        if name not in PARAMETERS:
            raise ParameterError(
                f"unknown model parameter {name!r}: the speaker model's parameters are "
                f"{', '.join(PARAMETERS)}"
            )
        allowed, read = PARAMETERS[name]
        text = value.get("string_value") if isinstance(value, dict) else None
        parsed = read(text) if isinstance(text, str) else None
        if parsed is None:
            raise ParameterError(f"model parameter {name!r} is {text!r}; it must be {allowed}")
        values[name] = parsed
    return SpeakerParameters(**values)


def check_audio(audio: np.ndarray, max_seconds: float) -> None:
    """Raise InvalidRequest for AUDIO that cannot be embedded: [rows, samples] float32, each
    row non-empty, finite and at most `max_seconds` long."""
    if audio.ndim != 2:
        raise InvalidRequest(f"AUDIO must have shape [batch, samples], got {audio.shape}")
    if audio.dtype != np.float32:
        raise InvalidRequest(f"AUDIO must be FP32, got {audio.dtype}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise InvalidRequest("AUDIO is empty")
    if audio.shape[1] > max_seconds * SAMPLE_RATE:
        raise InvalidRequest(
            f"AUDIO is {audio.shape[1] / SAMPLE_RATE:.1f} s long; at most {max_seconds:g} s"
        )
    if not np.isfinite(audio).all():
        raise InvalidRequest("AUDIO holds NaN or infinite samples")


def _error(message: str, code: Any) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    """One instance; `execute` gets every request of a dynamic batch at once."""

    def initialize(self, args: dict[str, str]) -> None:
        self.parameters = parse_parameters(json.loads(args["model_config"]))
        if self.parameters.cpu_threads > 0:
            torch.set_num_threads(self.parameters.cpu_threads)
        self.encoder, manifest = load_encoder(
            self.parameters.weights,
            resolve_device(self.parameters.device),
            verify_sha256=self.parameters.verify_sha256,
        )
        self.embed([np.zeros(SAMPLE_RATE, np.float32)])  # warm up
        source = manifest.get("source", {})
        pb_utils.Logger.log_info(
            f"serving the voice encoder {manifest['name']} ({source.get('package')} "
            f"{source.get('version')}, {manifest.get('licence')}) on {self.encoder.device}, "
            f"windows of 1.6 s every {self.parameters.window_step_ms} ms"
        )

    def embed(self, audios: list[np.ndarray]) -> list[Any]:
        return embed_batch(
            self.encoder,
            [normalize_volume(audio) for audio in audios],
            window_step=self.parameters.window_step_frames,
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        parsed: list[tuple[int, np.ndarray]] = []
        for index, request in enumerate(requests):
            if request.is_cancelled():
                responses[index] = _error("request cancelled", pb_utils.TritonError.CANCELLED)
                continue
            try:
                audio = pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy()
                check_audio(audio, self.parameters.max_audio_seconds)
            except InvalidRequest as exc:
                responses[index] = _error(str(exc), pb_utils.TritonError.INVALID_ARG)
                continue
            parsed.append((index, audio))
        rows = [row for _, audio in parsed for row in audio]
        if not rows:
            return responses
        try:
            results = iter(self.embed(rows))
        except Exception:  # a fault in one request must not take down the instance
            logger.exception("embedding a batch of %d rows failed; each request alone", len(rows))
            for index, audio in parsed:
                responses[index] = self._alone(audio)
            return responses
        for index, audio in parsed:
            responses[index] = self._response([next(results) for _ in range(audio.shape[0])])
        return responses

    def _alone(self, audio: np.ndarray) -> Any:
        try:
            return self._response(self.embed(list(audio)))
        except Exception as exc:
            logger.exception("embedding a request of %d rows failed", audio.shape[0])
            return _error(f"embedding failed: {exc}", pb_utils.TritonError.INTERNAL)

    def _response(self, results: list[Any]) -> Any:
        starts = np.array(
            [[start * FRAME_MS / 1000 for start, _ in result.slices] for result in results],
            dtype=np.float32,
        )
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("EMBEDDINGS", np.stack([r.windows for r in results])),
                pb_utils.Tensor("WINDOW_STARTS", starts),
                pb_utils.Tensor("EMBEDDING", np.stack([r.utterance for r in results])),
            ]
        )

    def finalize(self) -> None:
        logger.info("speaker model unloading")
