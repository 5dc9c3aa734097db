"""``export_model``: turn a source into ``<repository>/whisper/1/weights/<name>.pt`` + manifest."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from .checkpoint import resolve_alignment_heads, validate
from .errors import ExportError
from .manifest import build_manifest, is_current
from .sources import load_source
from .writer import atomic_file, sha256_file, write_json

logger = logging.getLogger(__name__)

# The name becomes a file name and a Triton parameter value: keep it plain.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def default_repository() -> Path:
    """The project's ``model_repository`` directory."""
    return Path(__file__).resolve().parent.parent / "model_repository"


def weights_directory(repository: Path) -> Path:
    return repository / "whisper" / "1" / "weights"


def export_model(
    name: str,
    source: str | Path = "auto",
    repository: Path | None = None,
    force: bool = False,
) -> Path:
    """Export ``name`` from ``source`` ("auto", "package", "openai" or a path) and return the
    manifest path. An existing export whose weights match its manifest is kept unless ``force``."""
    if not NAME_PATTERN.fullmatch(name):
        raise ExportError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
    directory = weights_directory(repository or default_repository())
    weights_path, manifest_path = directory / f"{name}.pt", directory / f"{name}.json"
    try:
        if not force and is_current(manifest_path, weights_path, name):
            logger.info(
                "%s is already exported and its sha256 matches; use --force to export again",
                weights_path,
            )
            return manifest_path
        checkpoint, source_info = load_source(name, str(source))
        alignment_heads = resolve_alignment_heads(checkpoint, name)
        validate(checkpoint, alignment_heads, source_info.detail)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_file(weights_path) as fp:
            torch.save(checkpoint.to_serializable(), fp)
            # The new weights are complete: drop the old manifest before they replace the
            # old weights, so that no manifest ever describes other weights than those on disk.
            manifest_path.unlink(missing_ok=True)
        weights_sha256 = sha256_file(weights_path)
        manifest = build_manifest(
            name, weights_path, weights_sha256, checkpoint, alignment_heads, source_info
        )
        write_json(manifest_path, manifest)
    except OSError as exc:
        raise ExportError(f"I/O error while exporting {name}: {exc}") from exc
    logger.info(
        "wrote %s (%s, sha256 %s) and %s",
        weights_path,
        checkpoint.dtype,
        weights_sha256,
        manifest_path,
    )
    return manifest_path
