"""Download official OpenAI checkpoints with openai-whisper's URL table and SHA-256 check."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

import whisper

from .errors import ExportError
from .writer import CHUNK_SIZE, atomic_file, sha256_file

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0


def official_models() -> list[str]:
    return list(whisper._MODELS)


def cache_dir() -> Path:
    """openai-whisper's own cache, so files it already downloaded are reused."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "whisper"


def _fetch(url: str, expected_sha256: str, fp: BinaryIO) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        while chunk := response.read(CHUNK_SIZE):
            digest.update(chunk)
            fp.write(chunk)
    if digest.hexdigest() != expected_sha256:
        raise ExportError(
            f"downloaded {url} but its sha256 {digest.hexdigest()} is not {expected_sha256}"
        )


def download_official(name: str, hint: str) -> tuple[Path, str, str]:
    """Return (cached .pt path, URL, sha256) for an official model, downloading it if needed.

    ``hint`` is appended to the error when the host cannot be reached.
    """
    try:
        url = whisper._MODELS[name]
    except KeyError as exc:
        raise ExportError(
            f"{name!r} is not an official OpenAI Whisper model ({', '.join(official_models())})"
        ) from exc
    expected_sha256 = url.split("/")[-2]
    target = cache_dir() / Path(urllib.parse.urlsplit(url).path).name
    if target.is_file() and sha256_file(target) == expected_sha256:
        logger.info("using cached %s", target)
        return target, url, expected_sha256
    logger.info("downloading %s to %s", url, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(target) as fp:
            _fetch(url, expected_sha256, fp)
    except urllib.error.HTTPError as exc:
        raise ExportError(
            f"cannot download {name!r} from {url}: HTTP {exc.code} {exc.reason}"
        ) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        host = urllib.parse.urlsplit(url).hostname
        reason = getattr(exc, "reason", None) or exc
        raise ExportError(
            f"cannot download {name!r}: {host} is unreachable ({reason}); {hint}"
        ) from exc
    return target, url, expected_sha256
