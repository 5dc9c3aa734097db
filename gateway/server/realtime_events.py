"""The OpenAI Realtime API's transcription sessions, as events: the session's settings read
from `session.update` (and the older `transcription_session.update`), and the server's
events written in OpenAI's shapes (docs/realtime.md).

Names follow OpenAI's reference for transcription sessions; what hermes does not do (noise
reduction, semantic VAD) is accepted where OpenAI's clients send it by default and refused
with a clear error where it would change what the client gets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from gateway.modes.stream_input import StreamConfig
from gateway.modes.turns import TurnConfig

LOGPROBS = "item.input_audio_transcription.logprobs"
# GA format type → (frame encoding, sample rate when the client names none)
FORMATS = {
    "audio/pcm": ("pcm_s16le", 24_000),
    "audio/pcmu": ("pcm_mulaw", 8_000),
    "audio/pcma": ("pcm_alaw", 8_000),
}
BETA_FORMATS = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
PCM_RATES = range(8_000, 48_001)
NOISE_REDUCTIONS = ("near_field", "far_field")
SERVER_VAD_FIELDS = {
    "type",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    # a voice agent's settings: accepted, nothing to respond to in a transcription session
    "create_response",
    "interrupt_response",
    "idle_timeout_ms",
}
MAX_PROMPT_CHARS = 2_000
MAX_PADDING_MS = 10_000
MAX_SILENCE_MS = 30_000


class RealtimeEventError(Exception):
    """A client event that cannot be applied: answered with an `error` event."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(exc: RealtimeEventError, client_event_id: str | None) -> dict[str, Any]:
    return event(
        "error",
        error={
            "type": "invalid_request_error",
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
            "event_id": client_event_id,
        },
    )


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RealtimeEventError(
            f"Invalid type for '{param}': expected an object.", "invalid_type", param
        )
    return value


def _known(value: dict[str, Any], fields: set[str], param: str) -> None:
    for name in value:
        if name not in fields:
            raise RealtimeEventError(
                f"Unknown parameter: '{param}.{name}'.", "unknown_parameter", f"{param}.{name}"
            )


def _number(value: Any, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RealtimeEventError(
            f"Invalid value for '{param}': expected a number from {low:g} to {high:g}.",
            "invalid_value",
            param,
        )
    return float(value)


def _text(value: Any, param: str, longest: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise RealtimeEventError(
            f"Invalid value for '{param}': expected a string of at most {longest} characters.",
            "invalid_value",
            param,
        )
    return value.strip() or None


@dataclass(frozen=True)
class RealtimeConfig:
    """One transcription session's settings (OpenAI's defaults)."""

    format: str = "audio/pcm"
    sample_rate: int = 24_000
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None
    turn: TurnConfig | None = TurnConfig()  # None: the client commits each turn
    noise_reduction: str | None = None  # accepted; hermes does not filter the audio
    logprobs: bool = False

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            language=self.language,
            prompt=self.prompt,
            sample_rate=self.sample_rate,
            encoding=FORMATS[self.format][0],
        )

    # -- reading session updates -------------------------------------------------------

    def updated(self, session: Any, beta: bool) -> RealtimeConfig:
        """These settings with a `session.update`'s (`beta`: `transcription_session.update`)
        applied; fields it leaves out keep their values."""
        session = _object(session, "session")
        return self._updated_beta(session) if beta else self._updated_ga(session)

    def _updated_ga(self, session: dict[str, Any]) -> RealtimeConfig:
        _known(session, {"type", "audio", "include", "id", "object"}, "session")
        if session.get("type", "transcription") != "transcription":
            raise RealtimeEventError(
                "This endpoint serves transcription sessions: 'session.type' must be "
                "'transcription' (connect with ?intent=transcription).",
                "invalid_value",
                "session.type",
            )
        config = self._with_include(session)
        audio = _object(session.get("audio", {}), "session.audio")
        _known(audio, {"input"}, "session.audio")
        given = _object(audio.get("input", {}), "session.audio.input")
        param = "session.audio.input"
        _known(given, {"format", "transcription", "turn_detection", "noise_reduction"}, param)
        if "format" in given:
            config = config._with_format(given["format"], f"{param}.format")
        if "transcription" in given:
            config = config._with_transcription(given["transcription"], f"{param}.transcription")
        if "turn_detection" in given:
            config = config._with_turns(given["turn_detection"], f"{param}.turn_detection")
        if "noise_reduction" in given:
            config = config._with_noise_reduction(
                given["noise_reduction"], f"{param}.noise_reduction"
            )
        return config

    def _updated_beta(self, session: dict[str, Any]) -> RealtimeConfig:
        fields = {
            "input_audio_format",
            "input_audio_transcription",
            "turn_detection",
            "input_audio_noise_reduction",
            "include",
            "modalities",
            "id",
            "object",
        }
        _known(session, fields, "session")
        config = self._with_include(session)
        if "input_audio_format" in session:
            kind = session["input_audio_format"]
            if kind not in BETA_FORMATS:
                raise RealtimeEventError(
                    "Invalid value for 'session.input_audio_format': expected one of "
                    f"{', '.join(BETA_FORMATS)}.",
                    "invalid_value",
                    "session.input_audio_format",
                )
            config = config._with_format({"type": BETA_FORMATS[kind]}, "session.input_audio_format")
        if "input_audio_transcription" in session:
            config = config._with_transcription(
                session["input_audio_transcription"], "session.input_audio_transcription"
            )
        if "turn_detection" in session:
            config = config._with_turns(session["turn_detection"], "session.turn_detection")
        if "input_audio_noise_reduction" in session:
            config = config._with_noise_reduction(
                session["input_audio_noise_reduction"], "session.input_audio_noise_reduction"
            )
        return config

    def _with_include(self, session: dict[str, Any]) -> RealtimeConfig:
        include = session.get("include", [LOGPROBS] if self.logprobs else [])
        if include is None:
            include = []
        if not isinstance(include, list) or any(item != LOGPROBS for item in include):
            raise RealtimeEventError(
                f"Invalid value for 'session.include': the only option is '{LOGPROBS}'.",
                "invalid_value",
                "session.include",
            )
        return replace(self, logprobs=LOGPROBS in include)

    def _with_format(self, value: Any, param: str) -> RealtimeConfig:
        value = _object(value, param)
        _known(value, {"type", "rate"}, param)
        kind = value.get("type")
        if kind not in FORMATS:
            raise RealtimeEventError(
                f"Invalid value for '{param}.type': expected one of {', '.join(FORMATS)}.",
                "invalid_value",
                f"{param}.type",
            )
        rate = value.get("rate", FORMATS[kind][1])
        if kind != "audio/pcm" and rate != FORMATS[kind][1]:
            raise RealtimeEventError(
                f"Invalid value for '{param}.rate': {kind} is 8000 Hz.", "invalid_value", param
            )
        if not isinstance(rate, int) or rate not in PCM_RATES:
            raise RealtimeEventError(
                f"Invalid value for '{param}.rate': expected an integer from "
                f"{PCM_RATES.start} to {PCM_RATES.stop - 1} (24000 by default).",
                "invalid_value",
                f"{param}.rate",
            )
        return replace(self, format=kind, sample_rate=rate)

    def _with_transcription(self, value: Any, param: str) -> RealtimeConfig:
        if value is None:  # "transcription off" makes no sense here: keep transcribing
            return self
        value = _object(value, param)
        _known(value, {"model", "language", "prompt", "keywords", "languages", "delay"}, param)
        keywords = value.get("keywords") or []
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise RealtimeEventError(
                f"Invalid value for '{param}.keywords': expected a list of strings.",
                "invalid_value",
                f"{param}.keywords",
            )
        prompt = _text(value.get("prompt", self.prompt), f"{param}.prompt", MAX_PROMPT_CHARS)
        if keywords:  # Whisper takes names and terms as context before the prompt
            prompt = " ".join(part for part in (", ".join(keywords), prompt) if part)
        model = value.get("model", self.model)
        if not isinstance(model, str) or not model:
            raise RealtimeEventError(
                f"Invalid value for '{param}.model': expected a model name.",
                "invalid_value",
                f"{param}.model",
            )
        language = value.get("language", self.language)
        return replace(
            self,
            model=model,
            language=_text(language, f"{param}.language", 32),
            prompt=prompt,
        )

    def _with_turns(self, value: Any, param: str) -> RealtimeConfig:
        if value is None:
            return replace(self, turn=None)
        value = _object(value, param)
        if value.get("type") != "server_vad":
            raise RealtimeEventError(
                f"Invalid value for '{param}.type': hermes detects turns with 'server_vad' "
                "(or null, to commit each turn with input_audio_buffer.commit).",
                "invalid_value",
                f"{param}.type",
            )
        _known(value, SERVER_VAD_FIELDS, param)
        base = self.turn or TurnConfig()
        ms = 1000.0
        return replace(
            self,
            turn=TurnConfig(
                threshold=_number(
                    value.get("threshold", base.threshold), f"{param}.threshold", 0.0, 1.0
                ),
                prefix_padding_s=_number(
                    value.get("prefix_padding_ms", base.prefix_padding_s * ms),
                    f"{param}.prefix_padding_ms",
                    0,
                    MAX_PADDING_MS,
                )
                / ms,
                silence_s=_number(
                    value.get("silence_duration_ms", base.silence_s * ms),
                    f"{param}.silence_duration_ms",
                    50,
                    MAX_SILENCE_MS,
                )
                / ms,
            ),
        )

    def _with_noise_reduction(self, value: Any, param: str) -> RealtimeConfig:
        if value is None:
            return replace(self, noise_reduction=None)
        value = _object(value, param)
        _known(value, {"type", "strength"}, param)
        if value.get("type") not in NOISE_REDUCTIONS:
            raise RealtimeEventError(
                f"Invalid value for '{param}.type': expected one of {', '.join(NOISE_REDUCTIONS)}.",
                "invalid_value",
                f"{param}.type",
            )
        return replace(self, noise_reduction=value["type"])

    # -- describing the session -----------------------------------------------------------

    def _turn_detection(self) -> dict[str, Any] | None:
        if self.turn is None:
            return None
        return {
            "type": "server_vad",
            "threshold": self.turn.threshold,
            "prefix_padding_ms": round(self.turn.prefix_padding_s * 1000),
            "silence_duration_ms": round(self.turn.silence_s * 1000),
        }

    def describe(self, session_id: str, beta: bool) -> dict[str, Any]:
        """The session object of `session.created` / `.updated` (`beta`: the older
        `transcription_session.*` shape)."""
        transcription = {
            "model": self.model,
            "language": self.language,
            "prompt": self.prompt or "",
        }
        noise = None if self.noise_reduction is None else {"type": self.noise_reduction}
        include = [LOGPROBS] if self.logprobs else []
        if beta:
            return {
                "id": session_id,
                "object": "realtime.transcription_session",
                "input_audio_format": next(k for k, v in BETA_FORMATS.items() if v == self.format),
                "input_audio_transcription": transcription,
                "turn_detection": self._turn_detection(),
                "input_audio_noise_reduction": noise,
                "include": include,
            }
        audio_format: dict[str, Any] = {"type": self.format}
        if self.format == "audio/pcm":
            audio_format["rate"] = self.sample_rate
        return {
            "type": "transcription",
            "id": session_id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": audio_format,
                    "transcription": transcription,
                    "turn_detection": self._turn_detection(),
                    "noise_reduction": noise,
                }
            },
            "include": include,
        }
