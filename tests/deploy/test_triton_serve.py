"""deploy/triton/serve.py, the Triton image's entry point: it writes HERMES_MODEL and
HERMES_DEVICE into the committed config.pbtxt, and must keep doing so as that file changes."""

from __future__ import annotations

import difflib
import importlib.util

import pytest

from testsupport.deploy import ROOT

CONFIG_TEXT = (ROOT / "model_repository" / "whisper" / "config.pbtxt").read_text()


def load_serve():
    spec = importlib.util.spec_from_file_location("serve", ROOT / "deploy" / "triton" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve = load_serve()


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    return [line for line in diff if line.startswith(("- ", "+ "))]


def test_sets_the_weights_and_the_device_and_nothing_else():
    config = serve.set_parameter(CONFIG_TEXT, "weights", "large-v3")
    config = serve.set_parameter(config, "device", "cuda")
    assert changed_lines(CONFIG_TEXT, config) == [
        '-     value: { string_value: "tiny.en" }',
        '+     value: { string_value: "large-v3" }',
        '-     value: { string_value: "auto" }',
        '+     value: { string_value: "cuda" }',
    ]


def test_is_idempotent():
    once = serve.set_parameter(CONFIG_TEXT, "weights", "base")
    assert serve.set_parameter(once, "weights", "base") == once


def test_a_missing_parameter_is_an_error():
    with pytest.raises(ValueError, match="no string parameter 'precision'"):
        serve.set_parameter(CONFIG_TEXT, "precision", "fp16")


@pytest.mark.parametrize("name", ["tiny.en", "base", "large-v3", "distil_small.en"])
def test_model_names_that_exports_use_are_accepted(name):
    assert serve.checked("HERMES_MODEL", name, serve.MODEL_NAME) == name


@pytest.mark.parametrize("name", ["", "../etc", 'x" } ]', "a/b", "-rf"])
def test_model_names_that_could_escape_are_refused(name):
    with pytest.raises(ValueError, match="HERMES_MODEL"):
        serve.checked("HERMES_MODEL", name, serve.MODEL_NAME)


@pytest.mark.parametrize(("device", "valid"), [("auto", True), ("cuda:1", True), ("gpu", False)])
def test_devices_are_the_models_own(device, valid):
    assert bool(serve.DEVICE.fullmatch(device)) is valid


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A copy of the model's config and an empty weights directory, as in the image."""
    config = tmp_path / "whisper" / "config.pbtxt"
    weights = tmp_path / "whisper" / "1" / "weights"
    weights.mkdir(parents=True)
    config.write_text(CONFIG_TEXT)
    monkeypatch.setattr(serve, "REPOSITORY", tmp_path)
    monkeypatch.setattr(serve, "CONFIG", config)
    monkeypatch.setattr(serve, "WEIGHTS", weights)
    return tmp_path


def test_main_configures_then_execs_tritonserver(repository, monkeypatch):
    (repository / "whisper" / "1" / "weights" / "base.json").write_text("{}")
    monkeypatch.setenv("HERMES_MODEL", "base")
    monkeypatch.setenv("HERMES_DEVICE", "cuda")
    monkeypatch.setenv("HERMES_TRITON_ADMIN_KEY", "admin-secret")
    monkeypatch.setattr("sys.argv", ["serve.py", "--log-verbose=1"])
    calls = []
    monkeypatch.setattr(serve.os, "execvp", lambda file, args: calls.append((file, args)))
    serve.main()
    rule = "shared-memory,model-repository,trace,logging:triton-admin-key=admin-secret"
    assert calls == [
        (
            "tritonserver",
            [
                "tritonserver",
                f"--model-repository={repository}",
                f"--http-restricted-api={rule}",
                f"--grpc-restricted-protocol={rule}",
                "--log-verbose=1",
            ],
        )
    ]
    config = (repository / "whisper" / "config.pbtxt").read_text()
    assert 'string_value: "base"' in config and 'string_value: "cuda"' in config


def test_main_refuses_to_start_without_the_export(repository, monkeypatch):
    monkeypatch.setenv("HERMES_MODEL", "small")
    monkeypatch.setattr(serve.os, "execvp", lambda *_: pytest.fail("tritonserver started"))
    with pytest.raises(SystemExit, match="no export named 'small'"):
        serve.main()
