"""Debian's Chromium driven by Playwright, which never downloads a browser of its own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Locator, Page, async_playwright

from testsupport.clips import run_ffmpeg

CHROMIUM = Path("/usr/bin/chromium")
SILENCE_AFTER_SPEECH_S = 3.0  # what the fake microphone plays after the clip

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("HERMES_REQUIRE_BROWSER"),
    reason=f"{CHROMIUM} is missing: run .ci/install-browser (Debian's chromium) to run the "
    "browser tests",
)

# Quiet, offline, headless Chromium: no calls home (this machine refuses outside
# connections), an auto-accepted fake microphone, audio allowed to start without a gesture.
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def chromium(profile: Path, extra_args: list[str] = ()) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a fresh profile directory."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*BASE_ARGS, *extra_args],
        )
        try:
            yield context
        finally:
            await context.close()


async def first_page(context: BrowserContext) -> Page:
    return context.pages[0] if context.pages else await context.new_page()


async def download_of(page: Page, button: Locator) -> tuple[str, str]:
    """Click `button` and read the file the page offers: (its suggested name, its text)."""
    async with page.expect_download() as info:
        await button.click()
    download = await info.value
    return download.suggested_filename, Path(await download.path()).read_text(encoding="utf-8")


def fake_microphone(clip: Path, wav: Path) -> list[str]:
    """Chromium's flags for a fake microphone that plays `clip` once, then
    SILENCE_AFTER_SPEECH_S of silence; written to `wav` as its capture device likes it
    (48 kHz mono PCM16)."""
    run_ffmpeg(
        "-i", str(clip), "-af", f"apad=pad_dur={SILENCE_AFTER_SPEECH_S}",
        "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", str(wav),
    )  # fmt: skip
    return [f"--use-file-for-fake-audio-capture={wav}%noloop"]
