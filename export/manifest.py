"""The manifest next to the weights: what the Triton model reads to load and check them."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import AlignmentHeads, WhisperCheckpoint
from .writer import sha256_file

logger = logging.getLogger(__name__)

EXPORTER_VERSION = 1

MANIFEST_KEYS = frozenset(
    {
        "name",
        "weights_file",
        "sha256",
        "dims",
        "dtype",
        "multilingual",
        "alignment_heads",
        "source",
        "exporter_version",
    }
)


@dataclass(frozen=True)
class SourceInfo:
    """Where the weights came from: kind, a human-readable detail, sha256 of the source file."""

    kind: str
    detail: str
    source_sha256: str


def build_manifest(
    name: str,
    weights_file: Path,
    weights_sha256: str,
    checkpoint: WhisperCheckpoint,
    alignment_heads: AlignmentHeads,
    source: SourceInfo,
) -> dict[str, Any]:
    return {
        "name": name,
        "weights_file": weights_file.name,
        "sha256": weights_sha256,
        "dims": dataclasses.asdict(checkpoint.dims),
        "dtype": checkpoint.dtype,
        "multilingual": checkpoint.multilingual,
        "alignment_heads": alignment_heads,
        "source": dataclasses.asdict(source),
        "exporter_version": EXPORTER_VERSION,
    }


def is_current(manifest_path: Path, weights_path: Path, name: str) -> bool:
    """True when the manifest is complete, describes ``name`` stored in ``weights_path``,
    and that file's sha256 matches."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable manifest %s: %s", manifest_path, exc)
        return False
    if not isinstance(manifest, dict) or manifest.keys() != MANIFEST_KEYS:
        logger.warning("ignoring manifest %s: unexpected keys", manifest_path)
        return False
    described = (manifest["name"], manifest["weights_file"], manifest["exporter_version"])
    if described != (name, weights_path.name, EXPORTER_VERSION):
        return False
    if not weights_path.is_file():
        logger.warning("%s lists %s, which is missing", manifest_path, weights_path.name)
        return False
    if sha256_file(weights_path) != manifest["sha256"]:
        logger.warning("%s does not match the sha256 in %s", weights_path, manifest_path)
        return False
    return True
