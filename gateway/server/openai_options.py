"""OpenAI's transcription options beyond the basic form: `include[]` and `chunking_strategy`.

`include[]=logprobs` asks for each text token with its log-probability; the model computes
them only for requests that ask. `chunking_strategy` says how the file is cut into windows:
`"auto"` (or nothing) is the gateway's own voice detector with its defaults, and a
`server_vad` object tunes that detector: `threshold` (0-1: the speech score a region opens
at; it closes below half of it), `prefix_padding_ms` (audio kept before and after each
stretch of speech) and `silence_duration_ms` (a pause at least this long ends a stretch).
Fields a `server_vad` object leaves out keep the detector's defaults (0.3, 300 ms, 300 ms),
so `{"type": "server_vad"}` is `"auto"`.

The object comes as OpenAI's SDK sends it (`chunking_strategy[type]=server_vad`,
`chunking_strategy[threshold]=0.5`, ...: one form field per key) or as a JSON text in the
field itself (`-F 'chunking_strategy={"type": "server_vad", "threshold": 0.5}'`). Anything
else is a 400 naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from multidict import MultiDictProxy

from gateway.modes.vad import VadConfig
from gateway.server.errors import ApiError

INCLUDES = ("logprobs",)


def flag(fields: Mapping[str, str], name: str) -> bool:
    """A true/false form field or query parameter (false when absent); 400 otherwise."""
    value = fields.get(name, "false").strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ApiError(400, f"{name} must be true or false, got {value!r}", "invalid_value")
    return value in ("true", "1", "yes")


CHUNKING = "chunking_strategy"
SERVER_VAD_FIELDS = ("type", "threshold", "prefix_padding_ms", "silence_duration_ms")
MAX_VAD_MILLISECONDS = 10_000


def includes(fields: MultiDictProxy[str]) -> frozenset[str]:
    """The `include[]` values (also read without the `[]`), each one known."""
    values = frozenset(fields.getall("include[]", []) + fields.getall("include", []))
    if unknown := values - set(INCLUDES):
        raise ApiError(
            400,
            f"include must be among {', '.join(INCLUDES)}, got {', '.join(sorted(unknown))}",
            "invalid_value",
            param="include",
        )
    return values


def _invalid(problem: str) -> ApiError:
    return ApiError(
        400,
        f'chunking_strategy must be "auto" or an object {{"type": "server_vad", '
        f'"threshold": 0-1, "prefix_padding_ms": ..., "silence_duration_ms": ...}}: {problem}',
        "invalid_value",
        param=CHUNKING,
    )


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(f"threshold must be a number from 0 to 1, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise _invalid(f"threshold must be a number from 0 to 1, got {value!r}")
    return number


def _milliseconds(name: str, value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= MAX_VAD_MILLISECONDS:
        raise _invalid(
            f"{name} must be a whole number of milliseconds from 0 to {MAX_VAD_MILLISECONDS}, "
            f"got {value!r}"
        )
    return number


def _server_vad(strategy: Mapping[str, Any]) -> VadConfig:
    if strategy.get("type") != "server_vad":
        raise _invalid(f"type must be server_vad, got {strategy.get('type')!r}")
    if unknown := set(strategy) - set(SERVER_VAD_FIELDS):
        raise _invalid(f"unknown field {', '.join(sorted(unknown))}")
    default = VadConfig()
    threshold = _threshold(strategy["threshold"]) if "threshold" in strategy else default.threshold
    padding = strategy.get("prefix_padding_ms")
    silence = strategy.get("silence_duration_ms")
    return VadConfig(
        threshold=threshold,
        release=threshold / 2,
        min_silence_seconds=(
            default.min_silence_seconds
            if silence is None
            else _milliseconds("silence_duration_ms", silence) / 1000
        ),
        pad_seconds=(
            default.pad_seconds
            if padding is None
            else _milliseconds("prefix_padding_ms", padding) / 1000
        ),
    )


def chunking_strategy(fields: MultiDictProxy[str]) -> VadConfig:
    """How the file's speech is found for cutting windows; the detector's defaults when the
    form has no `chunking_strategy` or says `auto`."""
    prefix = CHUNKING + "["
    nested = {
        key[len(prefix) : -1]: value
        for key, value in fields.items()
        if key.startswith(prefix) and key.endswith("]")
    }
    raw = fields.get(CHUNKING)
    if nested:
        if raw is not None:
            raise _invalid("given both as a value and as fields")
        return _server_vad(nested)
    if raw is None or raw.strip() in ("", "auto"):
        return VadConfig()
    try:
        strategy = json.loads(raw)
    except ValueError:
        raise _invalid(f"got {raw[:100]!r}") from None
    if strategy == "auto":
        return VadConfig()
    if not isinstance(strategy, dict):
        raise _invalid(f"got {raw[:100]!r}")
    return _server_vad(strategy)
