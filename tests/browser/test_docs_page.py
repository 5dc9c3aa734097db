"""The docs page at `GET /docs` in a real Chromium, against the real gateway and Triton with
API keys on: Swagger UI loads from the gateway alone with no console error, takes a key in
"Authorize", and its "Try it out" lists the models and transcribes jfk.flac."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page, expect

from gateway.server.app import create_app
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton
from testsupport.browser import chromium, first_page, requires_chromium
from testsupport.clips import ARTIFACTS_DIR, Clip
from testsupport.net import free_port, serve
from testsupport.wer import word_error_rate

SCREENSHOT = ARTIFACTS_DIR / "docs_page.png"
KEY = "hk-docs-page-1"
UNAUTHORIZED = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"

pytestmark = [requires_chromium, pytest.mark.integration]


@pytest.fixture
async def keyed_gateway(triton: LocalTriton) -> AsyncIterator[str]:
    """The real gateway with API keys on, in front of the session's Triton."""
    settings = Settings(triton_url=triton.grpc_url, port=free_port(), api_keys=KEY)
    async with serve(create_app(settings)) as url:
        yield url


async def try_it(page: Page, operation_id: str) -> Locator:
    """Open an operation, press "Try it out"; its block."""
    block = page.locator(f"[id$='-{operation_id}']").first
    await block.locator(".opblock-summary").first.click()
    await block.get_by_role("button", name="Try it out").click()
    return block


async def execute(block: Locator) -> tuple[str, str]:
    """Press Execute; (status, body) of the answer Swagger UI shows. An earlier answer is
    cleared first: read while Swagger UI replaced it, it gave the old status with the new
    body."""
    clear = block.get_by_role("button", name="Clear")
    if await clear.count():
        await clear.click()
        await expect(block.locator(".live-responses-table")).to_have_count(0)
    await block.get_by_role("button", name="Execute").click()
    answer = block.locator(".live-responses-table .response").first
    await expect(answer).to_be_visible(timeout=60_000)
    status = await answer.locator(".response-col_status").inner_text()
    body = await answer.locator(".response-col_description pre").first.inner_text()
    return status.strip(), body


async def test_docs_page_tries_the_api_with_a_key(
    keyed_gateway: str, clips: dict[str, Clip], tmp_path: Path
) -> None:
    console: list[str] = []
    elsewhere: list[str] = []  # requests to anywhere but the gateway
    async with chromium(tmp_path / "profile") as context:
        page = await first_page(context)
        await page.set_viewport_size({"width": 1280, "height": 1500})
        page.on(
            "console",
            lambda message: console.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: console.append(f"page error: {error}"))
        page.on(
            "request",
            lambda request: (
                None
                if request.url.startswith((keyed_gateway, "data:", "blob:"))
                else elsewhere.append(request.url)
            ),
        )
        try:
            await page.goto(f"{keyed_gateway}/docs")
            await expect(page.locator(".information-container .title")).to_contain_text("hermes")
            await expect(page.locator("[id$='-listModels']")).to_be_visible()
            assert console == [], console

            models = await try_it(page, "listModels")
            status, body = await execute(models)
            assert status == "401", body  # keys are on, and none given yet
            assert console == [UNAUTHORIZED], console  # the browser's note of it
            console.clear()

            await page.get_by_role("button", name="Authorize").first.click()
            dialog = page.locator(".modal-ux")
            await dialog.locator("input").fill(KEY)
            await dialog.get_by_role("button", name="Apply credentials").click()
            await expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
            await dialog.get_by_role("button", name="Close").click()

            status, body = await execute(models)
            assert status == "200", body
            assert '"whisper-1"' in body

            upload = await try_it(page, "createTranscription")
            await upload.locator("input[type=file]").set_input_files(clips["jfk.flac"].path)
            status, body = await execute(upload)
            assert status == "200", body
            assert word_error_rate(clips["jfk.flac"].text, json.loads(body)["text"]) < 0.1
            await upload.locator(".opblock-summary").first.click()  # fold it for the picture

            native = await try_it(page, "transcribe")
            await native.locator("input[type=file]").set_input_files(clips["jfk.flac"].path)
            status, body = await execute(native)
            assert status == "200", body
            assert json.loads(body)["segments"], body
            await native.locator(".opblock-summary").first.click()
            assert console == [], console
            assert elsewhere == [], elsewhere
        finally:
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            try:  # the top of the page: the document's title and the models' answer
                await page.evaluate("window.scrollTo(0, 0)")
                await page.screenshot(path=SCREENSHOT)
            except PlaywrightError as exc:  # a broken page must not hide the test's own failure
                print(f"no screenshot: {exc}")
