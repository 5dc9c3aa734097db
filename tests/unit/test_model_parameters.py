"""The model's parameters (config.pbtxt `parameters`): read strictly, with their defaults,
and what `auto` resolves to; without Triton or torch."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from export.exporter import NAME_PATTERN

MODEL_DIRECTORY = Path(__file__).resolve().parents[2] / "model_repository" / "whisper"
sys.path.insert(0, str(MODEL_DIRECTORY / "1"))

from model_parameters import (  # noqa: E402
    PARAMETERS,
    WEIGHTS_NAME,
    ModelParameters,
    ParameterError,
    Switch,
    parse_parameters,
)


def committed_parameters() -> dict[str, str]:
    config = (MODEL_DIRECTORY / "config.pbtxt").read_text()
    return dict(re.findall(r'key: "([^"]+)".*\n\s*value: \{ string_value: "([^"]*)"', config))


def test_the_committed_config_is_read() -> None:
    values = committed_parameters()
    assert set(values) == set(PARAMETERS)  # every parameter is in config.pbtxt, documented
    assert parse_parameters(values) == ModelParameters(
        weights="tiny.en",
        device="auto",
        cpu_threads=0,
        cpu_int8=Switch.OFF,
        low_latency_bfloat16=Switch.AUTO,
        file_bfloat16=Switch.OFF,
        low_latency_short_context=Switch.AUTO,
        cuda_graphs=Switch.ON,
        verify_sha256=True,
    )


def test_a_model_config_as_triton_hands_it_to_initialize() -> None:
    config = {
        "name": "whisper",
        "parameters": {
            "cpu_threads": {"string_value": "4"},
            "verify_sha256": {"string_value": "false"},
            "FORCE_CPU_ONLY_INPUT_TENSORS": {"string_value": "no"},  # the backend's own
        },
    }
    parameters = ModelParameters.from_model_config(config)
    assert (parameters.cpu_threads, parameters.verify_sha256) == (4, False)
    assert ModelParameters.from_model_config({"name": "whisper"}) == ModelParameters()


def test_omitted_parameters_keep_their_defaults() -> None:
    parameters = parse_parameters({})
    assert parameters == ModelParameters()
    assert (parameters.weights, parameters.device, parameters.cpu_threads) == ("tiny.en", "auto", 0)
    assert parameters.verify_sha256 is True
    assert parameters.use_int8() is False
    assert parameters.use_cuda_graphs() is True


def test_every_parameter_has_a_field_and_a_reader() -> None:
    assert [field.name for field in dataclasses.fields(ModelParameters)] == list(PARAMETERS)


def test_weights_names_are_the_names_the_export_writes() -> None:
    assert WEIGHTS_NAME.pattern == NAME_PATTERN.pattern


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("weights", "no-such-weights", "no-such-weights"),  # named; the load says it is missing
        ("weights", "large-v3_turbo.1", "large-v3_turbo.1"),
        ("device", "cpu", "cpu"),
        ("device", "cuda", "cuda"),
        ("device", "cuda:1", "cuda:1"),
        ("cpu_threads", "0", 0),
        ("cpu_threads", "12", 12),
        ("cpu_int8", "true", Switch.ON),
        ("cpu_int8", "auto", Switch.AUTO),
        ("low_latency_bfloat16", "false", Switch.OFF),
        ("low_latency_short_context", "true", Switch.ON),
        ("cuda_graphs", "false", Switch.OFF),
        ("verify_sha256", "false", False),
        ("verify_sha256", "true", True),
    ],
)
def test_allowed_values(name: str, text: str, value: object) -> None:
    assert getattr(parse_parameters({name: text}), name) == value


@pytest.mark.parametrize(
    ("name", "text", "allowed"),
    [
        ("verify_sha256", "flase", "true or false"),  # read as true before: == "true" failed
        ("verify_sha256", "auto", "true or false"),
        ("verify_sha256", "True", "true or false"),
        ("verify_sha256", "", "true or false"),
        ("cpu_threads", "-1", "a whole number, 0 or more"),
        ("cpu_threads", "two", "a whole number, 0 or more"),
        ("cpu_threads", "1.5", "a whole number, 0 or more"),
        ("cpu_threads", " 2", "a whole number, 0 or more"),
        ("cpu_threads", "", "a whole number, 0 or more"),
        ("cpu_int8", "yes", "auto, true or false"),
        ("low_latency_bfloat16", "on", "auto, true or false"),
        ("low_latency_short_context", "False", "auto, true or false"),
        ("cuda_graphs", "1", "auto, true or false"),
        ("device", "gpu", "auto, cpu, cuda or cuda:N"),
        ("device", "cuda:", "auto, cpu, cuda or cuda:N"),
        ("device", "cuda:first", "auto, cpu, cuda or cuda:N"),
        ("device", "CPU", "auto, cpu, cuda or cuda:N"),
        ("weights", "", "letters, digits, '.', '_' and '-'"),
        ("weights", "../tiny.en", "letters, digits, '.', '_' and '-'"),
        ("weights", "tiny.en ", "letters, digits, '.', '_' and '-'"),
    ],
)
def test_malformed_values_are_refused_naming_the_parameter_and_what_it_allows(
    name: str, text: str, allowed: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_parameters({name: text})
    message = str(caught.value)
    assert f"model parameter {name!r} is {text!r}" in message
    assert allowed in message


def test_an_unknown_parameter_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ParameterError) as caught:
        parse_parameters({"weights": "tiny.en", "verify_sha": "false"})
    message = str(caught.value)
    assert "unknown model parameter 'verify_sha'" in message
    assert all(name in message for name in PARAMETERS)


def test_a_parameter_without_a_string_value_is_refused() -> None:
    with pytest.raises(ParameterError, match="'cpu_threads' has no string_value"):
        ModelParameters.from_model_config({"parameters": {"cpu_threads": {"int64_value": 4}}})


@pytest.mark.parametrize(
    ("text", "cpu_computes_bfloat16", "int8", "bfloat16"),
    [
        ("auto", True, False, True),  # auto: where the CPU computes bfloat16 natively
        ("auto", False, False, False),
        ("true", False, False, True),
        ("false", True, False, False),
        ("true", True, True, False),  # int8 layers take float32 activations, whatever is set
        ("auto", True, True, False),
    ],
)
def test_low_latency_bfloat16(text, cpu_computes_bfloat16, int8, bfloat16) -> None:
    parameters = parse_parameters({"low_latency_bfloat16": text})
    chosen = parameters.use_low_latency_bfloat16(
        cpu_computes_bfloat16=cpu_computes_bfloat16, int8=int8
    )
    assert chosen is bfloat16


@pytest.mark.parametrize(
    ("text", "int8", "bfloat16"),
    [
        ("auto", False, False),  # auto: off, file mode being the accurate one
        ("true", False, True),
        ("false", False, False),
        ("true", True, False),  # int8 layers take float32 activations, whatever is set
    ],
)
def test_file_bfloat16(text, int8, bfloat16) -> None:
    parameters = parse_parameters({"file_bfloat16": text})
    assert parameters.use_file_bfloat16(int8=int8) is bfloat16


@pytest.mark.parametrize(
    ("text", "device_type", "short_context"),
    [
        ("auto", "cpu", True),  # auto: on a CPU, where the encoder dominates
        ("auto", "cuda", False),
        ("true", "cuda", True),
        ("false", "cpu", False),
    ],
)
def test_low_latency_short_context(text, device_type, short_context) -> None:
    parameters = parse_parameters({"low_latency_short_context": text})
    assert parameters.use_low_latency_short_context(device_type=device_type) is short_context


@pytest.mark.parametrize(
    ("text", "int8", "cuda_graphs"),
    [("auto", False, True), ("true", True, True), ("false", False, False)],
)
def test_cpu_int8_and_cuda_graphs(text, int8, cuda_graphs) -> None:
    parameters = parse_parameters({"cpu_int8": text, "cuda_graphs": text})
    assert parameters.use_int8() is int8
    assert parameters.use_cuda_graphs() is cuda_graphs
