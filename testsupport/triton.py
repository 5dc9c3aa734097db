"""What tests do to a real tritonserver that operators hope never happens, and what they read
from its metrics port."""

from __future__ import annotations

import os
import signal
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.tools.local_triton import LocalTriton


def crash(server: LocalTriton) -> None:
    """SIGKILL the server and its stub, as a crash or an OOM kill would."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)


def model_samples(server: LocalTriton, prefix: str, model: str = "whisper") -> list[Sample]:
    """The samples on the server's metrics port whose names start with `prefix`, of `model`."""
    url = f"http://{server.host}:{server.ports.metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(prefix) and sample.labels.get("model") == model
    ]
