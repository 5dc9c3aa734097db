"""Load the voice encoder's weights that `python -m export.speaker` wrote beside this file.

The export writes `weights/<name>.pt` (the network's tensors) and `weights/<name>.json`, its
manifest (sha256, source package and version, licence); the load checks the file against the
manifest, as the whisper model checks its weights, and refuses anything else.

`resolve_device` and the checksum repeat a few lines of `whisper/1/checkpoint.py` on purpose:
each model directory is what Triton's Python backend puts on the stub's path, and is copied
into the image on its own; a directory shared by both would be taken by Triton for a model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from voice_encoder import STATE_KEYS, VoiceEncoder

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """The exported weights are missing, incomplete or do not match their manifest."""


def resolve_device(setting: str) -> torch.device:
    """The config's `device` parameter ("auto", "cpu", "cuda", "cuda:N") as a device."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WeightsError(f"device {setting!r} requested but CUDA is not available")
    return device


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(name: str, weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = weights_dir / f"{name}.json"
    if not path.is_file():
        raise WeightsError(
            f"no exported speaker weights named {name!r} in {weights_dir} "
            "(run: python -m export.speaker)"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"unreadable manifest {path}: {exc}") from exc


def load_encoder(
    name: str,
    device: torch.device,
    *,
    weights_dir: Path = WEIGHTS_DIR,
    verify_sha256: bool = True,
) -> tuple[VoiceEncoder, dict[str, Any]]:
    """The voice encoder in eval mode on `device` (float32), and its manifest."""
    manifest = read_manifest(name, weights_dir)
    path = weights_dir / manifest.get("weights_file", "")
    if not path.is_file():
        raise WeightsError(f"manifest {name!r} names {path}, which is missing")
    if verify_sha256 and _sha256(path) != manifest.get("sha256"):
        raise WeightsError(f"{path} does not match the sha256 in its manifest")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or set(state) != STATE_KEYS:
        raise WeightsError(f"{path} does not hold the voice encoder's tensors")
    encoder = VoiceEncoder()
    encoder.load_state_dict(state)
    return encoder.to(device).eval(), manifest
