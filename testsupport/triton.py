"""What tests do to a real tritonserver that operators hope never happens."""

from __future__ import annotations

import os
import signal

from gateway.tools.local_triton import LocalTriton


def crash(server: LocalTriton) -> None:
    """SIGKILL the server and its stub, as a crash or an OOM kill would."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)
