"""Offline checks of the deployment files (helpers in `testsupport.deploy`): each rendering
is made once per session."""

from __future__ import annotations

from typing import Any

import pytest

from testsupport.deploy import COMPOSE_VARIANTS, K8S_DIR, OVERLAYS, compose_config, kustomize


@pytest.fixture(scope="session")
def compose_variants() -> dict[str, dict[str, Any]]:
    return {name: compose_config(*files) for name, files in COMPOSE_VARIANTS.items()}


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every kustomization rendered once: the base and each overlay."""
    directories = {"base": K8S_DIR / "base"}
    directories |= {name: K8S_DIR / "overlays" / name for name in OVERLAYS}
    return {name: kustomize(directory) for name, directory in directories.items()}
