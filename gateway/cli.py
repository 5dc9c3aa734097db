"""The `hermes` command: one entry point, one subcommand per job."""

from __future__ import annotations

import sys
from collections.abc import Callable

from gateway import local_triton, ops_client

COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "triton": (local_triton.main, "run a local tritonserver on the model repository"),
    "infer": (ops_client.main, "transcribe a file by calling Triton directly (ops)"),
}


def usage() -> str:
    lines = ["usage: hermes COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
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
