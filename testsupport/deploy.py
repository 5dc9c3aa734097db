"""Reading the deployment files offline: compose, Dockerfiles, Kubernetes manifests.

No container engine or cluster runs here. Debian's `docker-compose` (1.29) validates compose
files without an engine and `kubectl kustomize` renders the manifests; both come from
.ci/install-deploy-tools. A test that needs a missing tool is skipped, unless
HERMES_REQUIRE_DEPLOY_TOOLS=1 (set by CI) makes it fail.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dockerfile
import kubernetes_validate
import pytest  # skips a test whose tool is missing
import yaml

from gateway.server import settings

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"  # the version the manifests target
OVERLAYS = ("gpu", "cpu")

# Compose variants: the files each one reads. Plain `docker compose` reads both files of "gpu".
COMPOSE_VARIANTS = {
    "gpu": ("docker-compose.yml", "docker-compose.override.yml"),
    "cpu": ("docker-compose.yml",),
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is missing: run .ci/install-deploy-tools (as root)"
        if os.environ.get("HERMES_REQUIRE_DEPLOY_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_compose_config(
    *files: str | Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` on these files, relative paths resolved from the repository."""
    command = [require_tool("docker-compose"), "--project-directory", str(ROOT)]
    for file in files:
        command += ["--file", str(ROOT / file)]
    # Only what is given: a HERMES_* variable in the caller's environment must not leak in.
    environ = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run(
        [*command, "config"],
        check=False,
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
    )


def compose_config(*files: str | Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    result = run_compose_config(*files, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def gateway_settings(environment: Mapping[str, str]) -> settings.Settings:
    """What a gateway started with this environment runs with; every HERMES_* name must be
    one of its settings (a misspelt one would be ignored silently)."""
    known = {
        settings.ENV_PREFIX + field.name.upper() for field in dataclasses.fields(settings.Settings)
    }
    unknown = {name for name in environment if name.startswith(settings.ENV_PREFIX)} - known
    assert not unknown, f"not gateway settings: {unknown}"
    return settings.from_env(environment)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [require_tool("kubectl"), "kustomize", str(directory)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def validate_manifest(document: dict[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError for anything the API server's schema
    refuses, unknown fields included."""
    assert KUBERNETES_VERSION in map(
        kubernetes_validate.utils.major_minor, kubernetes_validate.utils.all_versions()
    ), f"kubernetes-validate has no schemas for Kubernetes {KUBERNETES_VERSION}"
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def container(pod_spec: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    containers = pod_spec["initContainers" if init else "containers"]
    return next(c for c in containers if c["name"] == name)


def dockerfile_stages(path: Path) -> list[list[dockerfile.Command]]:
    """The file's instructions, one list per build stage."""
    stages: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            stages.append([])
        stages[-1].append(command)
    return stages
