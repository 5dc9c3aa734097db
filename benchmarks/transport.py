"""`python -m benchmarks.transport`: how fast the gateway's gRPC client carries windows to
Triton, the model left out. A real tritonserver serves, under the name `whisper` and with
the project's own config (inputs, dynamic batching, priorities), a stand-in model that answers
every request at once with no text; N windows of 30 s go to it at once through `TritonAsr`,
the client the gateway uses. It prints, per N, the time until every window was answered and
Triton's executions by batch size: the rate at which windows can reach the model, and how
they arrive (a burst spread over many small executions, or few large ones).

    python -m benchmarks.transport [--windows 1,16,64,128] [--max-batch 64]

For the question a GPU run raises: do uploads reach the model fast enough to fill its
batches? (1,000 audio seconds per second of Harvard uploads are 56 windows a second.)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks import report
from benchmarks.report import TMP_DIR
from benchmarks.stack import Executions, free_port, settled
from gateway.backend.triton_client import TritonAsr
from gateway.core.contract import Priority, TranscribeOptions
from gateway.modes.audio import WINDOW_SAMPLES
from gateway.tools.local_triton import (
    LocalTriton,
    TritonPorts,
    model_repository_with,
)

# Whisper's outputs, empty, for every request of the batch; nothing else is done
STAND_IN_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        outputs = (("TEXT", b""), ("SEGMENTS", b"[]"), ("LANGUAGE", b"en"))
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.array([[value]], dtype=np.object_))
                    for name, value in outputs
                ]
            )
            for _ in requests
        ]
"""


def stand_in_repository(directory: Path, max_batch_size: int) -> Path:
    """The project's `whisper` config beside the stand-in model."""
    shutil.rmtree(directory, ignore_errors=True)
    configured = model_repository_with(directory / "configured", {}, max_batch_size)
    model = directory / "repository" / "whisper"
    (model / "1").mkdir(parents=True)
    shutil.copy(configured / "whisper" / "config.pbtxt", model / "config.pbtxt")
    (model / "1" / "model.py").write_text(STAND_IN_MODEL)
    return directory / "repository"


async def executions(session: aiohttp.ClientSession, triton: LocalTriton) -> Executions:
    async def stats() -> dict:
        async with session.get(f"{triton.http_url}/v2/models/whisper/stats") as reply:
            return await reply.json()

    return Executions.of(await settled(stats))


async def measure(triton: LocalTriton, counts: list[int]) -> list[list[str]]:
    client = TritonAsr(triton.grpc_url, "whisper", timeout_s=300.0, ready_timeout_s=2.0)
    window = (np.random.default_rng(0).standard_normal(WINDOW_SAMPLES) * 0.1).astype(np.float32)
    options = TranscribeOptions(language="en")
    rows = []
    async with aiohttp.ClientSession() as session:
        await client.transcribe(window, options)
        for count in counts:
            before = await executions(session, triton)
            started = time.perf_counter()
            await asyncio.gather(
                *(client.transcribe(window, options, priority=Priority.FILE) for _ in range(count))
            )
            wall = time.perf_counter() - started
            batches = (await executions(session, triton)).since(before)
            megabytes = count * window.nbytes / 1e6
            rows.append(
                [
                    str(count),
                    f"{wall:.3f}",
                    f"{count / wall:.0f}",
                    f"{megabytes / wall:.0f}",
                    batches.sizes(),
                ]
            )
            report.log(f"{count} windows: answered after {wall:.3f} s ({batches.sizes()})")
    await client.close()
    return rows


async def run(args: argparse.Namespace) -> str:
    repository = stand_in_repository(TMP_DIR / "transport", args.max_batch)
    ports = TritonPorts(free_port(), free_port(), free_port())
    triton = LocalTriton(
        model_repository=repository, ports=ports, log_path=TMP_DIR / "transport-triton.log"
    )
    await asyncio.to_thread(triton.__enter__)
    try:
        rows = await measure(triton, args.windows)
    finally:
        await asyncio.to_thread(triton.stop)
    return report.table(
        [
            "windows of 30 s at once",
            "all answered after s",
            "windows per s",
            "MB per s",
            "Triton's executions (batch size×count)",
        ],
        rows,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transport", description=__doc__)
    parser.add_argument(
        "--windows",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 16, 64, 128],
        help="how many windows at once, one level after another (default 1,16,64,128)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=64, help="the config's max_batch_size (default 64)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(asyncio.run(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
