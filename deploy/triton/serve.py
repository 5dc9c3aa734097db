"""Entry point of the Triton image: serve the export named by HERMES_MODEL on HERMES_DEVICE.

The committed config.pbtxt names tiny.en and device auto; a container takes both from its
environment, so they are written into the config before tritonserver reads it. Arguments are
passed on to tritonserver. Triton's shared-memory, model-repository, trace and logging APIs
are closed to anyone without the header `triton-admin-key: $HERMES_TRITON_ADMIN_KEY` (random
when unset), as `gateway/tools/local_triton.py` closes them for a local server.
"""

import os
import re
import secrets
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent / "model_repository"
CONFIG = REPOSITORY / "whisper" / "config.pbtxt"
WEIGHTS = REPOSITORY / "whisper" / "1" / "weights"

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def set_parameter(config: str, key: str, value: str) -> str:
    """The config text with parameter `key`'s string_value replaced by `value`."""
    pattern = re.compile(rf'(key: "{re.escape(key)}"[^}}]*?string_value: ")[^"]*(")')
    updated, count = pattern.subn(lambda match: match[1] + value + match[2], config, count=1)
    if count != 1:
        raise ValueError(f"{CONFIG.name} has no string parameter {key!r}")
    return updated


def checked(name: str, value: str, allowed: re.Pattern[str]) -> str:
    if not allowed.fullmatch(value):
        raise ValueError(f"{name}={value!r} is not valid (expected {allowed.pattern})")
    return value


def main() -> None:
    try:
        model = checked("HERMES_MODEL", os.environ.get("HERMES_MODEL", "tiny.en"), MODEL_NAME)
        device = checked("HERMES_DEVICE", os.environ.get("HERMES_DEVICE", "auto"), DEVICE)
        if not (WEIGHTS / f"{model}.json").is_file():
            raise ValueError(f"no export named {model!r} in {WEIGHTS} (python3 -m export {model})")
        config = set_parameter(CONFIG.read_text(), "weights", model)
        CONFIG.write_text(set_parameter(config, "device", device))
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    rule = "shared-memory,model-repository,trace,logging:triton-admin-key=" + (
        os.environ.get("HERMES_TRITON_ADMIN_KEY") or secrets.token_urlsafe(24)
    )
    restricted = [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
    server = ["tritonserver", f"--model-repository={REPOSITORY}", *restricted, *sys.argv[1:]]
    os.execvp("tritonserver", server)


if __name__ == "__main__":
    main()
