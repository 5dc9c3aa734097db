"""The live page with API keys on: opened as `/?token=KEY` it hands the key to its WebSocket
(browsers cannot set headers on one); opened without it, the gateway refuses the socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.async_api import expect

from gateway.server.app import create_app
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton
from testsupport.browser import chromium, first_page, requires_chromium
from testsupport.net import serve

pytestmark = requires_chromium

KEY = "hk-browser-5e1d0c"


@pytest.fixture
async def secured_gateway(triton: LocalTriton) -> AsyncIterator[str]:
    settings = replace(Settings(triton_url=triton.grpc_url), api_keys=KEY)
    async with serve(create_app(settings)) as url:
        yield url


@pytest.mark.integration
@pytest.mark.parametrize(("query", "state"), [(f"?token={KEY}", "closed"), ("", "error")])
async def test_the_page_passes_its_token_to_the_websocket(
    secured_gateway: str, tmp_path: Path, query: str, state: str
) -> None:
    sockets: list[str] = []
    async with chromium(tmp_path / "profile") as context:  # the fake microphone: a beep
        page = await first_page(context)
        page.on("websocket", lambda ws: sockets.append(ws.url))
        status = page.locator("#status")
        await page.goto(f"{secured_gateway}/{query}")
        await page.get_by_role("button", name="Start").click()
        if state == "closed":
            await expect(status).to_have_attribute("data-state", "listening", timeout=15_000)
            await page.get_by_role("button", name="Stop").click()
        await expect(status).to_have_attribute("data-state", state, timeout=60_000)
        assert await page.locator("#errors li").count() == 0
    assert sockets == [f"{secured_gateway.replace('http', 'ws', 1)}/stream-audio{query}"]
