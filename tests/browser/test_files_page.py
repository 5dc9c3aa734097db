"""The files tab of the page at `/` (`/#files`) in a real Chromium, against the real gateway and
Triton: a dropped file is transcribed as its windows finish, its segments play their part of
the file and its subtitles download; the API's errors are shown in words; Cancel stops the
gateway's work on the file."""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import srt
import tritonclient.grpc as grpcclient
from aiohttp import ClientSession
from playwright.async_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families

from gateway.modes.audio import SAMPLE_RATE
from gateway.server.app import create_app
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton
from testsupport.browser import chromium, download_of, first_page, requires_chromium
from testsupport.clips import ARTIFACTS_DIR, Clip
from testsupport.net import serve
from testsupport.wer import word_error_rate

pytestmark = [requires_chromium, pytest.mark.integration]

SCREENSHOT = ARTIFACTS_DIR / "files_page.png"
TIMESTAMP = r"\d\d:\d\d:\d\d,\d\d\d"
PAUSE_S = 1.0  # between the clips of a composite
MAX_WINDOW_S = 28.0  # the most speech a file window holds (Whisper's 30 s less its margin)
# the files view's status, progress bar (null while indeterminate) and growing text
SNAPSHOT = """() => {
  const bar = document.querySelector("#file-progress");
  return [
    document.querySelector("#file-status").dataset.state,
    bar.hasAttribute("value") ? bar.value : null,
    document.querySelector("#file-text").textContent,
  ];
}"""


StartGateway = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def start_gateway(triton: LocalTriton) -> StartGateway:
    """The real gateway in front of the session's Triton, these settings changed. One window
    of a file at a time, so that its progress comes in several steps."""

    def start(**changes: object) -> AbstractAsyncContextManager[str]:
        settings = Settings(triton_url=triton.grpc_url, file_windows_in_flight=1)
        return serve(create_app(replace(settings, **changes)))

    return start


def composite(clips: dict[str, Clip], names: list[str], path: Path) -> tuple[Path, str, float]:
    """The clips one after the other with a pause between them, as a 16 kHz FLAC: (its path,
    what is said in it, its duration)."""
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    audio = np.concatenate([part for name in names for part in (clips[name].audio, pause)])
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path, " ".join(clips[name].text for name in names), audio.size / SAMPLE_RATE


@pytest.fixture
async def files_page(tmp_path: Path) -> AsyncIterator[tuple[Page, list[str]]]:
    """A fresh Chromium tab (and what its console said)."""
    console: list[str] = []
    async with chromium(tmp_path / "profile") as context:
        page = await first_page(context)
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"page error: {error}"))
        yield page, console


async def drop(page: Page, path: Path, mime: str) -> None:
    """Drop `path` onto the drop zone, as a person dragging it from their file manager."""
    transfer = await page.evaluate_handle(
        """([name, type, data]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type }));
          return transfer;
        }""",
        [path.name, mime, base64.b64encode(path.read_bytes()).decode()],
    )
    zone = page.locator("#dropzone")
    await zone.dispatch_event("dragover", {"dataTransfer": transfer})
    await zone.dispatch_event("drop", {"dataTransfer": transfer})


async def test_a_dropped_file_is_transcribed_as_its_windows_finish(
    start_gateway: StartGateway,
    files_page: tuple[Page, list[str]],
    clips: dict[str, Clip],
    tmp_path: Path,
) -> None:
    page, console = files_page
    # three windows of speech: the bar moves twice before the last
    names = ["OSR_us_000_0034_8k.wav", "jfk.flac", "OSR_us_000_0034_8k.wav"]
    path, reference, duration = composite(clips, names, tmp_path / "talk.flac")
    status = page.locator("#file-status")
    async with start_gateway() as url:
        await page.goto(f"{url}/#files")
        await drop(page, path, "audio/flac")
        await expect(page.locator("#file-chosen")).to_contain_text("talk.flac")
        await page.get_by_role("button", name="Transcribe").click()

        seen: list[float] = []  # where the bar stood, as a person watching it would see
        texts: list[str] = []  # the transcript as it grew
        while True:
            # state, bar and text read in one go: read one by one, the page could finish
            # between two reads and a full bar would pass for a bar still running
            state, value, text = await page.evaluate(SNAPSHOT)
            if state not in ("sending", "transcribing"):
                break
            if value is not None and (not seen or value != seen[-1]):
                seen.append(value)
                texts.append(text)
            await asyncio.sleep(0.1)
        await expect(status).to_have_attribute("data-state", "done")
        progress_text = await page.locator("#file-progress-text").text_content()

        segments = page.locator("#segments .segment")
        lines = await page.locator("#segments .segment .text").all_text_contents()
        times = await page.locator("#segments .segment time").evaluate_all(
            "times => times.map((time) => parseFloat(time.dateTime.slice(2)))"
        )
        transcript = " ".join(lines)
        print(f"\nprogress seen: {seen}\ntranscript: {transcript!r}\nconsole: {console}")

        # the bar advanced window by window, the text with it...
        advanced = [value for value in seen if 0 < value < duration - 0.1]
        assert len(advanced) >= 2 and advanced == sorted(set(advanced)), seen
        assert len(set(texts)) >= 2, texts
        grown = zip(texts, texts[1:], strict=False)
        assert all(later.startswith(text) for text, later in grown), texts
        assert f"{duration:.1f} s of audio" in (progress_text or ""), progress_text
        # ...to the right words, in segments with their start times, in order
        assert word_error_rate(reference, transcript) <= 0.05, transcript
        assert times == sorted(times) and 0 <= times[0] and times[-1] < duration, times
        assert await page.locator("#file-error").is_hidden()

        # a segment plays its part of the file
        third = segments.nth(2)
        await third.click()
        await expect(third).to_have_attribute("aria-current", "true")
        await page.wait_for_function(
            "start => { const m = document.querySelector('#player audio');"
            " return m && !m.paused && m.currentTime >= start; }",
            arg=times[2],
        )
        playing_at = await page.locator("#player audio").evaluate("media => media.currentTime")
        assert times[2] <= playing_at < times[2] + 5, (times[2], playing_at)
        await page.locator("#player audio").evaluate("media => media.pause()")

        # the SubRip download parses, with the segments' times and words
        await page.get_by_label("Output format").select_option("srt")
        name, body = await download_of(page, page.get_by_role("button", name="Download .srt"))
        cues = list(srt.parse(body))
        assert name == "talk.srt"
        assert [cue.index for cue in cues] == list(range(1, len(cues) + 1))
        starts = [cue.start.total_seconds() for cue in cues]
        assert starts == pytest.approx(times, abs=0.001)
        assert all(cue.start < cue.end for cue in cues) and cues[-1].end.total_seconds() <= duration
        assert [cue.content for cue in cues] == lines
        # and so do the others
        await page.get_by_label("Output format").select_option("json")
        _, as_json = await download_of(page, page.get_by_role("button", name="Download .json"))
        assert '"segments"' in as_json and lines[0] in as_json
        await page.get_by_label("Output format").select_option("vtt")
        _, vtt = await download_of(page, page.get_by_role("button", name="Download .vtt"))
        assert vtt.startswith("WEBVTT\n\n") and lines[-1] in vtt

        await page.get_by_label("Output format").select_option("txt")
        await page.locator("#segments").scroll_into_view_if_needed()
        await page.screenshot(path=SCREENSHOT, full_page=True)
    assert not [line for line in console if line.startswith(("error", "page error"))], console


async def test_errors_are_shown_in_words(
    start_gateway: StartGateway, files_page: tuple[Page, list[str]], clips: dict[str, Clip]
) -> None:
    """A file over max_upload_mb (413), one longer than max_audio_seconds (413), and one that
    is not audio (415)."""
    page, _ = files_page
    error, status = page.locator("#file-error"), page.locator("#file-status")
    async with start_gateway(max_upload_mb=0.5, max_audio_seconds=3) as url:
        await page.goto(f"{url}/#files")
        await page.get_by_label("Audio or video file").set_input_files(clips["jfk.flac"].path)
        await page.get_by_role("button", name="Transcribe").click()
        await expect(status).to_have_attribute("data-state", "error")
        await expect(error).to_contain_text("The file is too large for this gateway.")
        await expect(error).to_contain_text("larger than the limit of 0.5 MB")

        await page.get_by_label("Audio or video file").set_input_files(clips["hotwords.mp3"].path)
        await page.get_by_role("button", name="Transcribe").click()
        await expect(error).to_contain_text("The recording is too long for this gateway.")
        await expect(status).to_have_text("error: audio_too_long")

        not_audio = Path(__file__)
        await page.get_by_label("Audio or video file").set_input_files(not_audio)
        await expect(error).to_be_hidden()  # a new file, a clean slate
        await page.get_by_role("button", name="Transcribe").click()
        await expect(error).to_contain_text("This is not an audio or video file.")
        await expect(status).to_have_text("error: unsupported_file_type")


async def gateway_metric(session: ClientSession, url: str, name: str, **labels: str) -> float:
    async with session.get(f"{url}/metrics") as reply:
        text = await reply.text()
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def inference_count(client: grpcclient.InferenceServerClient) -> int:
    stats = client.get_inference_statistics("whisper", as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0))


async def settled_inference_count(
    client: grpcclient.InferenceServerClient, quiet_s: float = 5.0, timeout_s: float = 90.0
) -> int:
    """Triton's inference count once it has not moved for `quiet_s`: a window it was reading
    when the client went finishes (or stops at the model's next cancellation check) first,
    and on a busy machine that takes a few seconds."""
    count, deadline = inference_count(client), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        if (latest := inference_count(client)) == count:
            return count
        count = latest
    raise AssertionError(f"Triton still counting inferences after {timeout_s} s: {count}")


async def test_cancel_stops_the_gateways_work(
    start_gateway: StartGateway,
    files_page: tuple[Page, list[str]],
    clips: dict[str, Clip],
    triton_client: grpcclient.InferenceServerClient,
    tmp_path: Path,
) -> None:
    page, _ = files_page
    names = ["OSR_us_000_0034_8k.wav", "jfk.flac"] * 3
    path, _, duration = composite(clips, names, tmp_path / "long.flac")
    whole_file = math.ceil(duration / MAX_WINDOW_S)  # the fewest windows reading it all takes
    status = page.locator("#file-status")
    before = await settled_inference_count(triton_client)
    async with start_gateway() as url, ClientSession() as session:
        await page.goto(f"{url}/#files")
        await page.get_by_label("Audio or video file").set_input_files(path)
        await page.get_by_role("button", name="Transcribe").click()
        # once the first window is done, and the gateway is working on the next one
        await page.wait_for_function(
            "() => document.getElementById('file-progress').value > 0", timeout=120_000
        )
        await page.get_by_role("button", name="Cancel").click()
        await expect(status).to_have_attribute("data-state", "cancelled")
        cancelled_at = time.monotonic()

        # the gateway lets go of the upload at once...
        while await gateway_metric(session, url, "hermes_uploads_admitted") > 0:
            assert time.monotonic() - cancelled_at < 10, "the upload is still admitted"
            await asyncio.sleep(0.2)
        # ...and, once the window under way at the cancel is over, neither it nor Triton do
        # any more of the file
        settled = await settled_inference_count(triton_client)
        file_seconds = await gateway_metric(session, url, "hermes_audio_seconds_total", mode="file")
        await asyncio.sleep(5.0)
        assert inference_count(triton_client) == settled
        assert (
            await gateway_metric(session, url, "hermes_audio_seconds_total", mode="file")
            == file_seconds
        )
        print(f"\ncancelled: {settled - before} windows read of {whole_file} or more")
        assert settled - before < whole_file
        assert file_seconds < duration - 30, (file_seconds, duration)
        # the page is ready for the next file
        await expect(page.get_by_role("button", name="Transcribe")).to_be_enabled()
        await expect(page.locator("#file-error")).to_be_hidden()
