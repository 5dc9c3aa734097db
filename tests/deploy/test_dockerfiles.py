"""The images: both Dockerfiles parsed (the `dockerfile` package, Docker's own parser) and the
build context they read (.dockerignore)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch

import pytest
from packaging.requirements import Requirement

from testsupport.deploy import ROOT, dockerfile_stages

GATEWAY = ROOT / "Dockerfile"
TRITON = ROOT / "deploy" / "triton" / "Dockerfile"
DOCKERFILES = pytest.mark.parametrize("path", [GATEWAY, TRITON], ids=["gateway", "triton"])

# The integration tests run the tritonserver of nvidia-pytriton 0.7, Triton 2.51.
TESTED_TRITON = (2, 51)
SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET", "CREDENTIAL")


def base_image(stage) -> str:
    return stage[0].value[0]


def instructions(stage, name: str) -> list:
    return [command for command in stage if command.cmd == name]


def triton_release(container_tag: str) -> tuple[int, int]:
    """NVIDIA's container YY.MM holds Triton 2.N, N counting months from 23.01 = 2.30."""
    year, month = map(int, re.fullmatch(r"(\d\d)\.(\d\d)-py3", container_tag).groups())
    return 2, 30 + (year - 23) * 12 + (month - 1)


def read_requirements(path) -> dict[str, Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {req.name.lower(): req for req in map(Requirement, filter(None, lines))}


@DOCKERFILES
def test_every_base_image_is_pinned_to_a_version(path):
    stage_names = set()
    for stage in dockerfile_stages(path):
        image, *alias = stage[0].value
        if image in stage_names:
            continue  # FROM an earlier stage
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image}: no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{image}: not a version"
        stage_names.update(alias[1:])


@DOCKERFILES
def test_the_final_stage_runs_as_a_numeric_non_root_user(path):
    users = instructions(dockerfile_stages(path)[-1], "USER")
    assert users, "the final stage never leaves root"
    user, _, group = users[-1].value[0].partition(":")
    # Numeric: Kubernetes' runAsNonRoot can only check a number.
    assert user.isdigit() and int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)


@DOCKERFILES
def test_no_secret_is_baked_in(path):
    for stage in dockerfile_stages(path):
        for command in instructions(stage, "ENV") + instructions(stage, "ARG"):
            names = command.value[::2] if command.cmd == "ENV" else command.value
            for name in names:
                assert not any(word in name.split("=")[0].upper() for word in SECRET_WORDS), (
                    f"{path.name}: {command.original}"
                )


def test_gateway_entry_point_is_hermes_serve():
    final = dockerfile_stages(GATEWAY)[-1]
    (entrypoint,) = instructions(final, "ENTRYPOINT")
    assert entrypoint.json and list(entrypoint.value) == ["hermes", "serve"]
    assert not instructions(final, "CMD")
    env = dict(zip(*[iter(instructions(final, "ENV")[0].value)] * 2, strict=True))
    assert env["HERMES_HOST"] == "0.0.0.0"


def test_gateway_is_multi_stage_on_slim_python_311():
    build, final = dockerfile_stages(GATEWAY)
    assert base_image(build) == base_image(final)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base_image(final))
    # The final stage installs nothing: it copies the built environment.
    assert not any("install" in command.value[0] for command in instructions(final, "RUN"))
    (copy,) = instructions(final, "COPY")
    assert copy.flags == ("--from=build",)


def test_gateway_image_installs_the_core_dependencies_pinned_and_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(dep).name.lower() for dep in project["dependencies"]}
    pins = read_requirements(ROOT / "deploy" / "gateway-constraints.txt")
    assert core <= set(pins), f"not pinned for the image: {core - set(pins)}"
    assert all(str(req.specifier).startswith("==") for req in pins.values())
    assert not {"torch", "openai-whisper"} & set(pins)
    # The project itself, without extras (the model's torch lives in an extra).
    (install,) = [
        c for c in instructions(dockerfile_stages(GATEWAY)[0], "RUN") if "install" in c.value[0]
    ]
    assert re.search(r"install --constraint gateway-constraints\.txt \.(\s|$)", install.value[0])


def test_triton_image_is_the_tested_triton_release():
    (stage,) = dockerfile_stages(TRITON)
    repository, _, tag = base_image(stage).rpartition(":")
    assert repository == "nvcr.io/nvidia/tritonserver"
    assert triton_release(tag) == TESTED_TRITON
    assert triton_release("24.10-py3") == (2, 51)  # as NVIDIA's release notes list it


def test_triton_image_pins_what_the_model_imports():
    pins = read_requirements(ROOT / "deploy" / "triton" / "requirements.txt")
    assert {"torch", "openai-whisper", "numpy"} <= set(pins)
    assert all(str(req.specifier).startswith("==") for req in pins.values())
    assert pins["numpy"].specifier.contains("1.26.4")  # Triton 2.51's Python backend: numpy 1


def test_triton_image_serves_through_serve_py():
    (stage,) = dockerfile_stages(TRITON)
    (entrypoint,) = instructions(stage, "ENTRYPOINT")
    assert list(entrypoint.value) == ["python3", "/opt/hermes/serve.py"]
    assert instructions(stage, "WORKDIR")[-1].value == ("/opt/hermes",)  # where -m export runs


def ignore_pattern_matches(pattern: str, path: str) -> bool:
    """As Docker matches: the path or one of its parent directories; `**/` at any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if pattern.startswith("**/"):
        return any(fnmatch(prefix.rsplit("/", 1)[-1], pattern[3:]) for prefix in prefixes)
    return any(fnmatch(prefix, pattern) for prefix in prefixes)


def dockerignore_allows(path: str) -> bool:
    """The last pattern of .dockerignore that matches decides; `!` lets a path back in."""
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if pattern.startswith("#") or not pattern:
            continue
        if ignore_pattern_matches(pattern.removeprefix("!").rstrip("/"), path):
            allowed = pattern.startswith("!")
    return allowed


@DOCKERFILES
def test_build_context_holds_what_the_images_copy(path):
    for stage in dockerfile_stages(path):
        for copy in instructions(stage, "COPY"):
            if any(flag.startswith("--from") for flag in copy.flags):
                continue
            for source in copy.value[:-1]:
                assert dockerignore_allows(source.rstrip("/")), f"{source} is ignored"


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/config",
        ".env",
        "model_repository/whisper/1/weights/tiny.en.pt",
        "model_repository/speaker/1/weights/resemblyzer.pt",
        "gateway/__pycache__/app.cpython-311.pyc",
        "tests/artifacts/triton.log",
        "benchmarks/results/tmp/run.json",
        ".cache/pip/x",
    ],
)
def test_build_context_leaves_out(path):
    assert not dockerignore_allows(path)
