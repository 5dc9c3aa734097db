"""The page at `/` in a real Chromium against the gateway with a scripted model (no Triton):
what only an overloaded or broken model shows (busy with its retry time, the model
unavailable, audio the live stream could not transcribe), and what every visitor needs: the
keyboard reaches every control with a visible focus, and at 200 % zoom nothing runs off the
side."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import srt
from aiohttp import ClientSession, FormData
from playwright.async_api import Page, expect

from gateway.core.contract import AsrUnavailable
from gateway.modes.audio import ffmpeg_executable
from gateway.server.app import create_app
from gateway.server.settings import Settings
from testsupport.browser import chromium, download_of, first_page, requires_chromium
from testsupport.clips import Clip
from testsupport.net import serve
from testsupport.scripted_backend import ScriptedBackend

pytestmark = requires_chromium

ZOOMED = {"width": 640, "height": 720}  # a 1280 x 1440 window at 200 %


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
async def page_at(
    backend: ScriptedBackend, tmp_path: Path, jfk_microphone: tuple[Path, list[str]]
) -> AsyncIterator[tuple[Page, str]]:
    """A Chromium tab (its microphone plays jfk.flac) and the gateway's URL; one upload at a
    time, none waiting."""
    settings = Settings(max_uploads_running=1, max_uploads_waiting=0)
    async with serve(create_app(settings, backend=backend)) as url:
        async with chromium(tmp_path / "profile", jfk_microphone[1]) as context:
            yield await first_page(context), url


async def test_busy_and_unavailable_are_said_with_when_to_retry(
    page_at: tuple[Page, str], backend: ScriptedBackend, clips: dict[str, Clip]
) -> None:
    page, url = page_at
    error = page.locator("#file-error")
    await page.goto(f"{url}/#files")
    await page.get_by_label("Audio or video file").set_input_files(clips["hotwords.mp3"].path)

    backend.hold()  # another client's upload takes the one running slot
    async with ClientSession() as session:
        form = FormData()
        form.add_field("file", clips["jfk.flac"].path.read_bytes(), filename="jfk.flac")
        other = asyncio.create_task(session.post(f"{url}/transcribe", data=form))
        await backend.until_waiting()
        await page.get_by_role("button", name="Transcribe").click()
        await expect(error).to_contain_text("The server is busy.")
        await expect(error).to_contain_text("Try again in 5 s.")
        backend.release()
        (await other).release()

    backend.failure = AsrUnavailable("no replica")  # after the events began
    await page.get_by_role("button", name="Transcribe").click()
    await expect(error).to_contain_text("The speech model is unavailable right now.")
    await expect(error).to_contain_text("Try again in a moment.")
    await expect(page.locator("#file-status")).to_have_text("error: model_unavailable")


async def test_copy_puts_the_chosen_format_on_the_clipboard(
    page_at: tuple[Page, str], clips: dict[str, Clip]
) -> None:
    page, url = page_at
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    await page.goto(f"{url}/#files")
    await page.get_by_label("Audio or video file").set_input_files(clips["jfk.flac"].path)
    await page.get_by_role("button", name="Transcribe").click()
    await expect(page.locator("#file-status")).to_have_text("done")
    lines = await page.locator("#segments .segment .text").all_text_contents()
    for name, check in [
        ("txt", lambda text: text == " ".join(lines) + "\n"),
        ("vtt", lambda text: text.startswith("WEBVTT\n\n00:00:00.") and lines[-1] in text),
    ]:
        await page.get_by_label("Output format").select_option(name)
        await page.get_by_role("button", name="Copy").click()
        await expect(page.locator("#file-copied")).to_have_text("Copied.")
        copied = await page.evaluate("navigator.clipboard.readText()")
        assert check(copied), (name, copied)


async def test_a_video_plays_in_the_page_and_its_sound_is_transcribed(
    page_at: tuple[Page, str], clips: dict[str, Clip], tmp_path: Path
) -> None:
    page, url = page_at
    video = tmp_path / "clip.webm"  # a blue picture with hotwords.mp3 as its sound
    subprocess.run(
        [
            *(ffmpeg_executable(), "-nostdin", "-loglevel", "error"),
            *("-f", "lavfi", "-i", "color=c=navy:s=160x120:r=10:d=4"),
            *("-i", str(clips["hotwords.mp3"].path), "-c:v", "libvpx", "-c:a", "libopus"),
            *("-shortest", str(video)),
        ],
        check=True,
    )
    await page.goto(f"{url}/#files")
    await page.get_by_label("Audio or video file").set_input_files(video)
    await page.get_by_role("button", name="Transcribe").click()
    await expect(page.locator("#file-status")).to_have_text("done")
    await page.locator("#segments .segment").first.click()
    await page.wait_for_function(
        "() => { const v = document.querySelector('#player video');"
        " return v && !v.paused && v.currentTime > 0 && v.videoWidth === 160; }"
    )


async def test_live_errors_and_skipped_audio_are_lines_of_the_transcript(
    page_at: tuple[Page, str], backend: ScriptedBackend
) -> None:
    page, url = page_at
    backend.failure = AsrUnavailable("the model is away")
    await page.goto(f"{url}/")
    await page.get_by_role("button", name="Start").click()
    error = page.locator("#live-lines li.error")
    await expect(error).to_contain_text("the model is away; the stream stays open", timeout=20_000)
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator("#status")).to_have_attribute("data-state", "closed")
    skipped = page.locator("#live-lines li.skipped")
    await expect(skipped.first).to_contain_text("not transcribed: the speech model was unavailable")
    assert await skipped.first.locator("time").text_content() == "0:00"
    assert await page.locator("#live-lines li.final").count() == 0
    await expect(page.get_by_role("button", name="Download .srt")).to_be_disabled()


async def test_live_speakers_are_shown_and_kept_in_the_subtitles(
    page_at: tuple[Page, str],
) -> None:
    page, url = page_at
    await page.goto(f"{url}/")
    await page.get_by_role("checkbox", name="Who spoke when").check()  # the visible tab's
    await page.get_by_role("button", name="Start").click()
    first = page.locator("#live-lines li.final").first
    await expect(first.locator(".speaker")).to_have_text("A", timeout=20_000)
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator("#status")).to_have_attribute("data-state", "closed")
    _, subtitles = await download_of(page, page.get_by_role("button", name="Download .srt"))
    cues = list(srt.parse(subtitles))
    assert cues and all(cue.content.startswith("[A] ") for cue in cues), subtitles


async def tab_through(page: Page, presses: int) -> dict[str, str]:
    """Press Tab `presses` times: each element reached (its id, or its tag and text) with the
    outline it showed, in the order reached (past the last one, focus leaves the page)."""
    reached: dict[str, str] = {}
    for _ in range(presses):
        await page.keyboard.press("Tab")
        name, outline = await page.evaluate(
            """() => {
              const element = document.activeElement;
              if (element === document.body) return ["body", ""];
              const style = getComputedStyle(element);
              const name = element.id || `${element.localName}:${element.textContent.trim()}`;
              return [name, `${style.outlineStyle} ${style.outlineWidth}`];
            }"""
        )
        if name != "body":
            reached.setdefault(name, outline)
    return reached


async def test_the_keyboard_reaches_every_control_with_a_visible_focus(
    page_at: tuple[Page, str], clips: dict[str, Clip]
) -> None:
    page, url = page_at
    await page.goto(f"{url}/#files")
    await page.get_by_label("Audio or video file").set_input_files(clips["jfk.flac"].path)
    await page.get_by_role("button", name="Transcribe").click()
    await expect(page.locator("#file-status")).to_have_text("done")

    await page.locator(".brand").click()  # Tab goes on from the top of the page
    reached = await tab_through(page, 30)
    controls = [
        "a:Live microphone",
        "a:Files",
        "file-input",
        "file-language",
        "file-prompt",
        "file-format",
        "file-diarize",
        "transcribe",
        "file-copy",
        "file-download",
    ]
    assert [name for name in reached if name in controls] == controls, reached
    assert any(name.startswith("button:0:0") for name in reached), reached  # the segments
    assert set(reached.values()) == {"solid 3px"}, reached

    # Enter on a segment plays it, as a click does
    segment = page.locator("#segments .segment").first
    await segment.focus()
    await page.keyboard.press("Enter")
    await expect(segment).to_have_attribute("aria-current", "true")


@pytest.mark.parametrize("tab", ["live", "files"])
async def test_nothing_runs_off_the_side_at_200_percent(
    page_at: tuple[Page, str], clips: dict[str, Clip], tab: str
) -> None:
    page, url = page_at
    await page.set_viewport_size(ZOOMED)
    await page.goto(f"{url}/#{tab}")
    await expect(page.locator(f"#{tab}-heading")).to_be_visible()
    if tab == "files":
        await page.get_by_label("Audio or video file").set_input_files(clips["jfk.flac"].path)
        await page.get_by_role("button", name="Transcribe").click()
        await expect(page.locator("#file-status")).to_have_text("done")
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
