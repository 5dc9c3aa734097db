"""``python -m export.speaker [--from auto|PATH] [--repository DIR] [--force]``: the voice
encoder's weights for the Triton model `speaker`.

The weights are resemblyzer's `pretrained.pt` (Apache-2.0), a file inside the `resemblyzer`
wheel on the package index. Its code pulls in librosa and webrtcvad, which the model does not
use, so the wheel is not installed: `pip download --no-deps` fetches it (or an installed
resemblyzer, or a wheel or `pretrained.pt` given as PATH, is read), the file's sha256 is
checked against the one pinned here, and only the network's tensors are written to
``<repository>/speaker/1/weights/resemblyzer.pt`` with a manifest (source package and version,
sha256 of both files, licence) that the model checks at load.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import ExportError
from .exporter import default_repository
from .writer import atomic_file, sha256_file, write_json

logger = logging.getLogger(__name__)

NAME = "resemblyzer"
DISTRIBUTION = "resemblyzer"
VERSION = "0.1.4"
LICENCE = "Apache-2.0"
MEMBER = "resemblyzer/pretrained.pt"
# pretrained.pt of resemblyzer 0.1.4 (the same file since 0.1.0): a changed file is refused
PRETRAINED_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
EXPORTER_VERSION = 1
LAYERS, MELS, HIDDEN, EMBEDDING = 3, 40, 256, 256
SHAPES: dict[str, tuple[int, ...]] = {
    **{
        f"lstm.{kind}_l{layer}": shape
        for layer in range(LAYERS)
        for kind, shape in (
            ("weight_ih", (4 * HIDDEN, MELS if layer == 0 else HIDDEN)),
            ("weight_hh", (4 * HIDDEN, HIDDEN)),
            ("bias_ih", (4 * HIDDEN,)),
            ("bias_hh", (4 * HIDDEN,)),
        )
    },
    "linear.weight": (EMBEDDING, HIDDEN),
    "linear.bias": (EMBEDDING,),
}
MANIFEST_KEYS = frozenset(
    {"name", "weights_file", "sha256", "dims", "source", "licence", "exporter_version"}
)


def weights_directory(repository: Path) -> Path:
    return repository / "speaker" / "1" / "weights"


def _installed_file() -> tuple[bytes, str] | None:
    """pretrained.pt of an installed resemblyzer (found without importing it), if any."""
    spec = importlib.util.find_spec(DISTRIBUTION)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        return None
    version = importlib.metadata.version(DISTRIBUTION)
    return path.read_bytes(), f"{DISTRIBUTION}=={version} (installed, {path})"


def _from_wheel(wheel: Path) -> tuple[bytes, str]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{wheel} is not a resemblyzer wheel with {MEMBER}: {exc}") from exc
    return data, f"{wheel.name} (sha256 {sha256_file(wheel)})"


def _downloaded() -> tuple[bytes, str]:
    """The wheel from the package index, without its dependencies, read in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="hermes-speaker-") as tmp:
        logger.info("downloading %s==%s from the package index", DISTRIBUTION, VERSION)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"{DISTRIBUTION}=={VERSION}",
                "--dest",
                tmp,
            ],
            check=False,
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise ExportError(
                f"pip could not download {DISTRIBUTION}=={VERSION}; pass --from with a "
                "resemblyzer wheel or its pretrained.pt"
            )
        return _from_wheel(wheels[0])


def read_source(source: str) -> tuple[bytes, str]:
    """pretrained.pt's bytes and where they came from: `auto` (an installed resemblyzer, else
    the wheel from the package index) or a path to a wheel or to pretrained.pt."""
    if source == "auto":
        return _installed_file() or _downloaded()
    path = Path(source).expanduser()
    if not path.is_file():
        raise ExportError(f"source {path} does not exist")
    if path.suffix == ".whl":
        return _from_wheel(path)
    return path.read_bytes(), str(path.resolve())


def network_state(data: bytes) -> dict[str, torch.Tensor]:
    """The encoder's tensors from pretrained.pt (which also holds the optimiser's state and the
    GE2E similarity scale, neither needed to embed), their names and shapes checked."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        state = checkpoint["model_state"]
    except Exception as exc:
        raise ExportError(f"pretrained.pt is not resemblyzer's checkpoint: {exc}") from exc
    tensors = {}
    for key, shape in SHAPES.items():
        tensor = state.get(key)
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise ExportError(f"pretrained.pt has no {key} of shape {shape}")
        tensors[key] = tensor.detach().to(torch.float32).contiguous()
    return tensors


def is_current(manifest_path: Path, weights_path: Path) -> bool:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.keys() == MANIFEST_KEYS
        and manifest["exporter_version"] == EXPORTER_VERSION
        and manifest["weights_file"] == weights_path.name
        and weights_path.is_file()
        and sha256_file(weights_path) == manifest["sha256"]
    )


def export_speaker(
    source: str = "auto", repository: Path | None = None, force: bool = False
) -> Path:
    """Write the voice encoder's weights and manifest; return the manifest's path. A current
    export (its weights matching its manifest) is kept unless `force`."""
    directory = weights_directory(repository or default_repository())
    weights_path, manifest_path = directory / f"{NAME}.pt", directory / f"{NAME}.json"
    if not force and is_current(manifest_path, weights_path):
        logger.info("%s is already exported and its sha256 matches", weights_path)
        return manifest_path
    data, origin = read_source(source)
    digest = hashlib.sha256(data).hexdigest()
    if digest != PRETRAINED_SHA256:
        raise ExportError(
            f"pretrained.pt from {origin} has sha256 {digest}, not resemblyzer {VERSION}'s "
            f"{PRETRAINED_SHA256}"
        )
    state = network_state(data)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_file(weights_path) as handle:
            torch.save(state, handle)
            manifest_path.unlink(missing_ok=True)
        manifest: dict[str, Any] = {
            "name": NAME,
            "weights_file": weights_path.name,
            "sha256": sha256_file(weights_path),
            "dims": {"n_mels": MELS, "hidden": HIDDEN, "layers": LAYERS, "embedding": EMBEDDING},
            "source": {
                "package": DISTRIBUTION,
                "version": VERSION,
                "file": MEMBER,
                "file_sha256": digest,
                "detail": origin,
            },
            "licence": LICENCE,
            "exporter_version": EXPORTER_VERSION,
        }
        write_json(manifest_path, manifest)
    except OSError as exc:
        raise ExportError(f"I/O error while exporting the speaker weights: {exc}") from exc
    logger.info("wrote %s and %s from %s", weights_path, manifest_path, origin)
    return manifest_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.speaker",
        description="Write the voice encoder's weights (resemblyzer, Apache-2.0) and their "
        "manifest into the Triton model repository's speaker model.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        default="auto",
        metavar="auto|PATH",
        help="auto (default): an installed resemblyzer, else its wheel from the package index "
        "(pip download, not installed); PATH: a resemblyzer wheel or its pretrained.pt",
    )
    parser.add_argument("--repository", type=Path, default=default_repository())
    parser.add_argument("--force", action="store_true", help="export even if a valid export exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        export_speaker(args.source, args.repository, args.force)
    except ExportError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
