"""The model's parameters (`parameters` in config.pbtxt), read strictly, once, at load.

Every parameter the model knows is listed here with its type, its allowed values and its
default. `ModelParameters.from_model_config` refuses a parameter the model does not know (a
misspelt name would otherwise be ignored) and a value that is not one of the allowed ones (a
misspelt `false` would otherwise be taken for a default), with an error that names the
parameter and what it allows; `TritonPythonModel.initialize` raises it, so Triton reports
the model as failed to load with that message.

Imports nothing but the standard library, so it is tested without Triton or torch. What
`auto` resolves to depends on the machine (is there a GPU, does the CPU compute bfloat16):
the `use_*` methods take those facts as arguments.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# As `python -m export NAME` accepts names (export/exporter.py, NAME_PATTERN): an export's
# files are weights/NAME.pt and weights/NAME.json.
WEIGHTS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
COUNT = re.compile(r"[0-9]+")

# Parameters of Triton's Python backend itself, which the backend reads and checks from the
# same `parameters` map: allowed beside the model's own and left to the backend.
BACKEND_PARAMETERS = frozenset({"EXECUTION_ENV_PATH", "FORCE_CPU_ONLY_INPUT_TENSORS"})


class ParameterError(ValueError):
    """A model parameter the model does not know, or a value it does not allow."""


class Switch(enum.Enum):
    """A parameter that is on, off, or `auto`: decided at load from the machine."""

    ON = "true"
    OFF = "false"
    AUTO = "auto"

    def resolve(self, auto: bool) -> bool:
        """On or off; `auto` is what AUTO means for this parameter on this machine."""
        return auto if self is Switch.AUTO else self is Switch.ON


@dataclass(frozen=True)
class ModelParameters:
    """The model's parameters, typed; each default is the value when config.pbtxt omits it."""

    weights: str = "tiny.en"  # which export under 1/weights/ to serve
    device: str = "auto"  # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N
    cpu_threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    cpu_int8: Switch = Switch.AUTO  # on CPU, the linear layers in int8 (auto: off)
    low_latency_bfloat16: Switch = Switch.AUTO  # see use_low_latency_bfloat16
    file_bfloat16: Switch = Switch.AUTO  # see use_file_bfloat16 (auto: off)
    low_latency_short_context: Switch = Switch.AUTO  # see use_low_latency_short_context
    cuda_graphs: Switch = Switch.AUTO  # on CUDA, the decoder step as CUDA graphs (auto: on)
    verify_sha256: bool = True  # check the weights against their manifest at load

    @classmethod
    def from_model_config(cls, model_config: Mapping[str, Any]) -> ModelParameters:
        """The parameters of a model configuration as Triton hands it to `initialize` (parsed
        from JSON: `{"parameters": {"weights": {"string_value": "tiny.en"}, ...}}`)."""
        values: dict[str, str] = {}
        for name, value in model_config.get("parameters", {}).items():
            text = value.get("string_value") if isinstance(value, Mapping) else None
            if not isinstance(text, str):
                raise ParameterError(f"model parameter {name!r} has no string_value: {value!r}")
            values[name] = text
        return parse_parameters(values)

    def use_int8(self) -> bool:
        """`cpu_int8`: auto is off (the load applies it on a CPU only)."""
        return self.cpu_int8.resolve(auto=False)

    def use_low_latency_bfloat16(self, *, cpu_computes_bfloat16: bool, int8: bool) -> bool:
        """`low_latency_bfloat16`: auto where the CPU computes bfloat16 natively (AVX512-BF16
        or AMX; elsewhere torch emulates it, slower than float32). Never with int8 layers,
        which take float32 activations, whatever the parameter says."""
        return self.low_latency_bfloat16.resolve(auto=cpu_computes_bfloat16) and not int8

    def use_file_bfloat16(self, *, int8: bool) -> bool:
        """`file_bfloat16` (every request that is not LOW_LATENCY: file windows, a stream's
        read at its end): auto is off, file mode being the accurate one. On a CPU with AMX
        tiles it ran tiny.en's encoder 2.8× as fast as float32, and uploads 15-22 % faster,
        for a point of WER (41.1 against 40.1 % over the accuracy benchmark's 2713 words,
        3.2 points in babble); AVX512-BF16 alone (a Zen 4) was no faster than float32, and
        without either torch emulates bfloat16. Never with int8 layers."""
        return self.file_bfloat16.resolve(auto=False) and not int8

    def use_low_latency_short_context(self, *, device_type: str) -> bool:
        """`low_latency_short_context` (for LOW_LATENCY and SHORT_CONTEXT requests): auto on
        a CPU, where the encoder's arithmetic dominates; not on a GPU, where the decoder's
        per-token loop does."""
        return self.low_latency_short_context.resolve(auto=device_type == "cpu")

    def use_cuda_graphs(self) -> bool:
        """`cuda_graphs`: auto is on (the decoder uses them on CUDA only)."""
        return self.cuda_graphs.resolve(auto=True)


@dataclass(frozen=True)
class _Kind:
    """How a parameter's text becomes its value; `allowed` says what it accepts."""

    allowed: str
    read: Callable[[str], Any]  # the value, or None when the text is not allowed


def _switch(text: str) -> Switch | None:
    return next((switch for switch in Switch if switch.value == text), None)


def _boolean(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text)


def _count(text: str) -> int | None:
    return int(text) if COUNT.fullmatch(text) else None


def _matching(pattern: re.Pattern[str]) -> Callable[[str], str | None]:
    return lambda text: text if pattern.fullmatch(text) else None


SWITCH = _Kind("auto, true or false", _switch)
BOOLEAN = _Kind("true or false", _boolean)
PARAMETERS: dict[str, _Kind] = {
    "weights": _Kind(
        "the name of an export under 1/weights/ (letters, digits, '.', '_' and '-', as "
        "python -m export NAME takes it)",
        _matching(WEIGHTS_NAME),
    ),
    "device": _Kind("auto, cpu, cuda or cuda:N", _matching(DEVICE)),
    "cpu_threads": _Kind("a whole number, 0 or more (0: torch's default)", _count),
    "cpu_int8": SWITCH,
    "low_latency_bfloat16": SWITCH,
    "file_bfloat16": SWITCH,
    "low_latency_short_context": SWITCH,
    "cuda_graphs": SWITCH,
    "verify_sha256": BOOLEAN,
}


def parse_parameters(values: Mapping[str, str]) -> ModelParameters:
    """The model's parameters from their texts (name -> string_value); a parameter that is
    not given keeps its default. Raises `ParameterError` for an unknown name or a value its
    parameter does not allow."""
    parsed: dict[str, Any] = {}
    for name, text in values.items():
        if name in BACKEND_PARAMETERS:
            continue
        kind = PARAMETERS.get(name)
        if kind is None:
            raise ParameterError(
                f"unknown model parameter {name!r}: the whisper model's parameters are "
                f"{', '.join(PARAMETERS)}"
            )
        value = kind.read(text)
        if value is None:
            raise ParameterError(f"model parameter {name!r} is {text!r}; it must be {kind.allowed}")
        parsed[name] = value
    return ModelParameters(**parsed)
