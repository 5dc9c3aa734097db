"""The page at `/` with API keys on. Opened as `/?token=KEY` (the live page's first way) it keeps
the key for the tab and takes it out of its address; opened without one, it asks for a key
before anything is sent, and checks it. Either way the key goes to the WebSocket as its query
(browsers cannot set headers on one) and to uploads as `Authorization: Bearer`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from gateway.server.app import create_app
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton
from testsupport.browser import chromium, first_page, requires_chromium
from testsupport.clips import Clip
from testsupport.net import serve

pytestmark = [requires_chromium, pytest.mark.integration]

KEY = "hk-browser-5e1d0c"


@pytest.fixture
async def secured_gateway(triton: LocalTriton) -> AsyncIterator[str]:
    settings = replace(Settings(triton_url=triton.grpc_url), api_keys=KEY)
    async with serve(create_app(settings)) as url:
        yield url


async def stream_a_moment(page: Page) -> None:
    """Start the live tab (the fake microphone: a beep), then stop it."""
    status = page.locator("#status")
    await page.get_by_role("button", name="Start").click()
    await expect(status).to_have_attribute("data-state", "listening", timeout=15_000)
    await page.get_by_role("button", name="Stop").click()
    await expect(status).to_have_attribute("data-state", "closed", timeout=60_000)
    assert await page.locator("#live-lines li.error").count() == 0


async def held_key(page: Page) -> str | None:
    return await page.evaluate("sessionStorage.getItem('hermes-api-key')")


async def test_a_token_in_the_address_is_kept_for_the_tab(
    secured_gateway: str, tmp_path: Path
) -> None:
    sockets: list[str] = []
    async with chromium(tmp_path / "profile") as context:
        page = await first_page(context)
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(f"{secured_gateway}/?token={KEY}")
        await expect(page.locator("#served")).to_have_text("Model: tiny.en")  # let in
        assert await page.evaluate("location.search") == ""
        assert await held_key(page) == KEY
        assert await page.evaluate("localStorage.length") == 0
        await expect(page.locator("#key-panel")).to_be_hidden()
        await stream_a_moment(page)
    assert sockets == [f"{secured_gateway.replace('http', 'ws', 1)}/stream-audio?token={KEY}"]


async def test_without_a_key_the_page_asks_for_one(
    secured_gateway: str, tmp_path: Path, clips: dict[str, Clip]
) -> None:
    sockets: list[str] = []
    async with chromium(tmp_path / "profile") as context:
        page = await first_page(context)
        page.on("websocket", lambda ws: sockets.append(ws.url))
        panel, message = page.locator("#key-panel"), page.locator("#key-message")
        await page.goto(f"{secured_gateway}/")
        await expect(message).to_have_text("This gateway needs an API key.")
        # nothing is streamed without one
        await page.get_by_role("button", name="Start").click()
        await expect(page.locator("#status")).to_have_text("error: this gateway needs an API key")
        assert sockets == []
        # a wrong key is refused and not kept... (the one field with focus is the key's)
        await page.keyboard.type("not-the-key")
        await page.keyboard.press("Enter")
        await expect(message).to_have_text("The API key of this tab was refused: enter another.")
        await page.get_by_label("API key", exact=True).fill(KEY)
        await page.get_by_role("button", name="Use this key").click()
        await expect(panel).to_be_hidden()
        await expect(page.locator("#key-held")).to_be_visible()
        assert await held_key(page) == KEY
        # ...the right one streams and uploads, and is still there after a reload
        await stream_a_moment(page)
        await page.reload()
        await expect(page.locator("#served")).to_have_text("Model: tiny.en")
        await page.get_by_role("link", name="Files").click()
        await page.get_by_label("Audio or video file").set_input_files(clips["hotwords.mp3"].path)
        await page.get_by_role("button", name="Transcribe").click()
        await expect(page.locator("#file-status")).to_have_text("done", timeout=60_000)
        # and forgotten on request
        await page.get_by_role("button", name="Forget it").click()
        await expect(message).to_have_text("This gateway needs an API key.")
        assert await held_key(page) is None
    assert sockets == [f"{secured_gateway.replace('http', 'ws', 1)}/stream-audio?token={KEY}"]
