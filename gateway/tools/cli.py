"""The `hermes` command: one entry point, one subcommand per job."""

from __future__ import annotations

import sys
from collections.abc import Callable

from gateway.server import app
from gateway.tools import local_triton, ops_client, stack, stream_client, transcribe_client

COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "up": (stack.main, "run a local Triton and the gateway in front of it (make run)"),
    "serve": (app.main, "run the gateway against a running Triton (HERMES_TRITON_URL)"),
    "triton": (local_triton.main, "run a local tritonserver on the model repository"),
    "infer": (ops_client.main, "transcribe a file by calling Triton directly (ops)"),
    "transcribe": (transcribe_client.main, "transcribe a file through a running gateway"),
    "stream": (stream_client.main, "stream a file to a running gateway as if live (WebSocket)"),
}


def usage() -> str:
    lines = ["usage: hermes COMMAND [ARGS]", "", "commands:"]
    width = max(map(len, COMMANDS)) + 2
    lines += [f"  {name:<{width}}{help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print(usage(), file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
        return 0 if args and args[0] in ("-h", "--help") else 2
    command, _ = COMMANDS[args[0]]
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
