"""The real stack for a benchmark run: a local tritonserver on free ports and the gateway app
in this process (aiohttp `AppRunner` on a free port)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.local_triton import LocalTriton, TritonPorts
from gateway.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    gateway_url: str
    triton_http_url: str
    settings: Settings
    session: aiohttp.ClientSession

    async def triton_json(self, path: str) -> dict:
        async with self.session.get(f"{self.triton_http_url}{path}") as reply:
            reply.raise_for_status()
            return await reply.json()

    async def triton_version(self) -> str:
        return (await self.triton_json("/v2")).get("version", "?")

    async def batch_counts(self) -> tuple[int, int]:
        """Triton's (inference_count, execution_count) for the model so far."""
        stats = (await self.triton_json(f"/v2/models/{self.settings.triton_model}/stats"))
        model = stats["model_stats"][0]
        return int(model["inference_count"]), int(model["execution_count"])


@asynccontextmanager
async def running_stack(log_path: Path) -> AsyncIterator[Stack]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    triton = LocalTriton(ports=TritonPorts(free_port(), free_port(), free_port()), log_path=log_path)
    await asyncio.to_thread(triton.__enter__)  # starts it and waits until the model is ready
    try:
        settings = Settings(
            port=free_port(), triton_url=triton.grpc_url, log_level="WARNING",
            max_audio_seconds=3600.0,
        )
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        try:
            timeout = aiohttp.ClientTimeout(total=1800)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                yield Stack(
                    gateway_url=f"http://{settings.host}:{settings.port}",
                    triton_http_url=triton.http_url,
                    settings=settings,
                    session=session,
                )
        finally:
            await runner.cleanup()
    finally:
        await asyncio.to_thread(triton.stop)
