"""The gateway's API key for the command-line clients (`hermes transcribe`, `hermes stream`):
`--api-key KEY`, else the environment variable `HERMES_API_KEY` (better: a flag is visible to
anyone who lists the processes), sent as `Authorization: Bearer KEY` as the gateway expects
(gateway/server/access.py), on the WebSocket handshake too."""

from __future__ import annotations

import argparse
import os

ENVIRONMENT_VARIABLE = "HERMES_API_KEY"
HINT = f"give the gateway's API key with --api-key or {ENVIRONMENT_VARIABLE}"


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="the gateway's API key, sent as Authorization: Bearer "
        f"(default: ${ENVIRONMENT_VARIABLE}; prefer it, flags show in process lists)",
    )


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`args.api_key` from the flag, else the environment; None when neither gives one. A key
    that cannot go in a header (spaces, control or non-ASCII characters) is a usage error, as
    the gateway refuses to configure such a key."""
    key = args.api_key if args.api_key is not None else os.environ.get(ENVIRONMENT_VARIABLE)
    key = key.strip() if key else None
    if key is not None and not (key.isascii() and key.isprintable() and " " not in key):
        parser.error("the API key must be printable ASCII without spaces")
    args.api_key = key or None


def headers(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}
