"""Which weights a local Triton serves: the repository as committed, or a copy of it whose
config names other weights (`hermes up --weights`, `HERMES_MODEL`, `make run WEIGHTS=...`).
The copies are served by a real Triton in tests/integration/test_multilingual.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.server.settings import load
from gateway.tools import stack
from gateway.tools.local_triton import (
    DEFAULT_MODEL_REPOSITORY,
    TritonLaunchError,
    configured_weights,
    repository_serving,
)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The project's model repository in small: its config, and exports named by manifests."""
    model = tmp_path / "repository" / "whisper"
    (model / "1" / "weights").mkdir(parents=True)
    shutil.copy(DEFAULT_MODEL_REPOSITORY / "whisper" / "config.pbtxt", model / "config.pbtxt")
    for name in ("tiny.en", "base"):
        (model / "1" / "weights" / f"{name}.json").write_text("{}")
    other = tmp_path / "repository" / "speaker"  # another model beside whisper
    other.mkdir()
    (other / "config.pbtxt").write_text('name: "speaker"\n')
    return tmp_path / "repository"


def test_the_committed_config_serves_tiny_en() -> None:
    assert configured_weights() == "tiny.en"


def test_the_configured_weights_serve_from_the_repository_itself(repository, tmp_path) -> None:
    assert repository_serving(None, repository, tmp_path / "work") == repository
    assert repository_serving("tiny.en", repository, tmp_path / "work") == repository
    assert not (tmp_path / "work").exists()


def test_other_weights_serve_from_a_copy_whose_config_names_them(repository, tmp_path) -> None:
    served = repository_serving("base", repository, tmp_path / "work")
    assert served == tmp_path / "work" / "repository-base"
    assert configured_weights(served) == "base"
    config = (served / "whisper" / "config.pbtxt").read_text()
    original = (repository / "whisper" / "config.pbtxt").read_text()
    assert config == original.replace('string_value: "tiny.en"', 'string_value: "base"')
    assert (served / "whisper" / "1").resolve() == (repository / "whisper" / "1").resolve()
    assert (served / "speaker").resolve() == (repository / "speaker").resolve()  # as it is
    # asked again (a restart), the same copy
    assert repository_serving("base", repository, tmp_path / "work") == served
    assert configured_weights(repository) == "tiny.en"  # the original untouched


def test_weights_never_exported_are_refused_with_the_command_that_makes_them(
    repository, tmp_path
) -> None:
    with pytest.raises(TritonLaunchError, match=r"no export named 'small'.*WEIGHTS=small"):
        repository_serving("small", repository, tmp_path / "work")


class Launched(Exception):
    pass


@pytest.mark.parametrize(
    ("argv", "environ", "weights"),
    [
        (["--weights", "base", "--port", "9000"], {}, "base"),
        (["--port", "9000", "--weights=base"], {"HERMES_MODEL": "small"}, "base"),
        (["--port", "9000"], {"HERMES_MODEL": "base"}, "base"),
        (["--port", "9000"], {}, None),
    ],
)
def test_hermes_up_takes_weights_and_leaves_the_rest_to_the_gateway(
    monkeypatch, argv, environ, weights
) -> None:
    monkeypatch.delenv("HERMES_MODEL", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    seen = {}

    def launch(*, ports, weights):
        seen["weights"] = weights
        raise TritonLaunchError("not started in a unit test")

    monkeypatch.setattr(stack, "LocalTriton", launch)

    def startup(args):
        seen["gateway"] = args
        return load(args, environ={})

    monkeypatch.setattr(stack, "startup", startup)
    assert stack.main(argv) == 1
    assert seen["weights"] == weights
    assert seen["gateway"] == ["--port", "9000"]
