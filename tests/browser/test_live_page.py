"""The live tab of the page at `GET /` in a real Chromium, against the real gateway and Triton.

Chromium's fake microphone plays jfk.flac (as a 48 kHz WAV, then silence); the page captures
it through its AudioWorklet, streams 16 kHz PCM16 over `/stream-audio`, and the test reads
the transcript off the page: a line per final with its start time, the level meter moving
while the clip plays, and the text and SubRip downloads once the stream has ended.
Playwright only drives Debian's /usr/bin/chromium (installed by `.ci/install-browser`); it
never downloads a browser. The resampler of `pcm-worklet.js` is
also checked on its own, in the same browser, without Triton.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
import srt
from aiohttp import web
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from gateway.server.app import STATIC_DIR, create_app
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton
from testsupport.browser import (
    SILENCE_AFTER_SPEECH_S,
    chromium,
    download_of,
    first_page,
    requires_chromium,
)
from testsupport.clips import ARTIFACTS_DIR, Clip
from testsupport.net import free_port, serve
from testsupport.wer import word_error_rate

SCREENSHOT = ARTIFACTS_DIR / "live_page.png"
SENT_AUDIO = ARTIFACTS_DIR / "live_page_sent.wav"  # what the page streamed, for debugging
# Stop at the latest this long after "listening", finals complete or not (stop flushes them).
# The server reads at most the last 30 s of audio it holds, and drops older audio nothing was
# committed from: on a slow machine, streaming silence past 30 s could lose words before stop.
STOP_BY_S = 25.0

pytestmark = requires_chromium


@pytest.fixture
async def live_gateway(triton: LocalTriton) -> AsyncIterator[str]:
    """The real gateway on a free port, in front of the session's Triton."""
    port = free_port()
    async with serve(create_app(Settings(triton_url=triton.grpc_url, port=port))) as url:
        yield url


@pytest.mark.integration
async def test_live_page_transcribes_the_microphone(
    live_gateway: str,
    jfk_microphone: tuple[Path, list[str]],
    clips: dict[str, Clip],
    tmp_path: Path,
) -> None:
    reference = clips["jfk.flac"].text
    wav, microphone = jfk_microphone
    audio_seconds = soundfile.info(wav).duration
    speech_seconds = audio_seconds - SILENCE_AFTER_SPEECH_S
    received: list[str] = []  # what went over the socket, in order, with its time
    messages: list[dict] = []  # the server's messages, parsed
    sent_audio: list[bytes] = []  # the page's binary frames
    sent_text: list[dict] = []  # and its control messages
    console: list[str] = []
    t0 = time.monotonic()

    def on_websocket(ws) -> None:
        def on_received(payload: str | bytes) -> None:
            received.append(f"{time.monotonic() - t0:6.2f}s {payload!s}")
            if isinstance(payload, str):
                messages.append(json.loads(payload))

        def on_sent(payload: str | bytes) -> None:
            if isinstance(payload, bytes):
                sent_audio.append(payload)
            else:
                received.append(f"{time.monotonic() - t0:6.2f}s SENT {payload}")
                sent_text.append(json.loads(payload))

        ws.on("framereceived", on_received)
        ws.on("framesent", on_sent)
        ws.on("close", lambda _: received.append(f"{time.monotonic() - t0:6.2f}s socket closed"))

    def report() -> str:
        return (
            "\nserver messages:\n  "
            + "\n  ".join(received)
            + f"\nbinary frames sent: {len(sent_audio)} ({sum(map(len, sent_audio))} bytes)"
            + "\nconsole:\n  "
            + ("\n  ".join(console) or "(nothing)")
            + f"\nscreenshot: {SCREENSHOT}, audio sent: {SENT_AUDIO}"
        )

    async with chromium(tmp_path / "profile", microphone) as context:
        page = await first_page(context)
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"page error: {error}"))
        page.on("websocket", on_websocket)
        status, partial, level = (
            page.locator("#status"),
            page.locator("#partial"),
            page.locator("#level"),
        )
        lines = page.locator("#live-lines li.final .text")
        try:
            await page.goto(f"{live_gateway}/")
            await expect(status).to_have_attribute("data-state", "idle")
            # Chrome's noise suppressor blurs JFK's word endings enough for tiny.en to hear
            # "American" and "asked" (measured on this clip): the test streams without it.
            await page.get_by_label("Browser noise suppression").set_checked(False)
            await page.get_by_role("button", name="Start").click()
            await expect(status).to_have_attribute("data-state", "listening", timeout=15_000)
            listening_at = time.monotonic()

            # The fake microphone plays the clip in real time, then silence. Like a user, stop
            # once it has played and the finals have caught up, or after STOP_BY_S anyway.
            first_final_at = None
            loudest = 0.0  # the level meter, at its highest
            while (elapsed := time.monotonic() - listening_at) < STOP_BY_S:
                text = " ".join(await lines.all_text_contents())
                loudest = max(loudest, await level.evaluate("meter => meter.value"))
                if text and first_final_at is None:
                    first_final_at = round(elapsed, 1)
                if elapsed > audio_seconds and word_error_rate(reference, text) == 0:
                    break
                await asyncio.sleep(0.25)
            before_stop = " ".join(await lines.all_text_contents())
            stop_at = time.monotonic()

            await page.get_by_role("button", name="Stop").click()
            await expect(status).to_have_attribute("data-state", "closed", timeout=60_000)
            closed_after = time.monotonic() - stop_at

            transcript = " ".join(await lines.all_text_contents())
            print(
                f"\nlive page: first final {first_final_at}s after listening; stop clicked at "
                f"{stop_at - listening_at:.1f}s (speech {speech_seconds:.1f}s); "
                f"closed {closed_after:.1f}s after stop"
                f"\n  before stop: {before_stop!r}\n  transcript:  {transcript!r}"
            )
            # The page spoke the protocol: config first, 100 ms PCM16 frames, stop last...
            assert sent_text[0] == {
                "type": "config",
                "sample_rate": 16000,
                "encoding": "pcm_s16le",
                "channels": 1,
                "language": "en",
            }
            assert sent_text[-1] == {"type": "stop"}, report()
            assert {len(frame) for frame in sent_audio[:-1]} == {3200}, report()
            # ...showed exactly the finals it was sent, each on a line with its start time...
            finals = [m for m in messages if m["type"] == "final"]
            assert await lines.all_text_contents() == [m["text"].strip() for m in finals]
            shown_at = await page.locator("#live-lines li.final time").evaluate_all(
                "times => times.map((time) => time.dateTime)"
            )
            assert shown_at == [f"PT{m['start']:.3f}S" for m in finals], report()
            # ...and they are what JFK said.
            assert word_error_rate(reference, transcript) == 0, f"{transcript!r}{report()}"
            assert await partial.text_content() == "", report()
            assert await status.text_content() == "closed", report()
            assert await page.locator("#live-lines li:not(.final)").count() == 0, report()
            assert messages[-1] == {"type": "done"}, report()
            # The meter showed the microphone was heard (speech at -20 dBFS fills 2/3 of it)
            assert loudest > 0.5, loudest
            # The stream has ended: its transcript can be taken away
            _, text = await download_of(page, page.get_by_role("button", name="Download .txt"))
            assert text == "".join(m["text"] for m in finals).strip() + "\n"
            _, subtitles = await download_of(page, page.get_by_role("button", name="Download .srt"))
            cues = list(srt.parse(subtitles))
            assert [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == [
                (m["start"], m["end"], m["text"].strip()) for m in finals
            ]
        finally:
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            pcm = np.frombuffer(b"".join(sent_audio), "<i2")
            soundfile.write(SENT_AUDIO, pcm, 16000, subtype="PCM_16")
            try:
                await page.screenshot(path=SCREENSHOT, full_page=True)
            except PlaywrightError as exc:  # a broken page must not hide the test's own failure
                print(f"no screenshot: {exc}")


# --- the worklet's resampler, on its own (no microphone, no Triton) --------------------------


@pytest.fixture(scope="module")
async def static_page(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Page]:
    """A page served from gateway/static over http://127.0.0.1 (a secure context)."""
    app = web.Application()
    app.router.add_static("/static", STATIC_DIR)
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with serve(app) as url, chromium(profile) as context:
        page = await first_page(context)
        await page.goto(f"{url}/static/index.html")
        await page.add_script_tag(url="/static/pcm-worklet.js")
        yield page


RESAMPLE_JS = """
([inputRate, frequency, seconds, chunk]) => {
  const { Resampler } = globalThis.HermesPcm;
  const n = Math.round(inputRate * seconds);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 0.5 * Math.sin(2 * Math.PI * frequency * i / inputRate);
  const resampler = new Resampler(inputRate, 16000);
  const parts = [];
  for (let i = 0; i < n; i += chunk) parts.push(resampler.process(x.subarray(i, i + chunk)));
  parts.push(resampler.flush());
  return parts.flatMap((part) => Array.from(part));
}
"""


@pytest.mark.parametrize("input_rate", [48000, 44100, 22050, 16000, 8000])
async def test_resampler_keeps_a_tone_in_the_band(static_page: Page, input_rate: int) -> None:
    output = np.array(await static_page.evaluate(RESAMPLE_JS, [input_rate, 1000, 1.0, 128]))
    assert output.size == 16000  # one second in, one second out, none lost at the end
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(output.size) / 16000)
    # Away from the ends (where the input starts and stops abruptly) it is the tone itself.
    assert np.max(np.abs(output - ideal)[200:-200]) < 1e-3


@pytest.mark.parametrize(
    ("input_rate", "frequency"), [(48000, 12000), (44100, 15000), (48000, 9500)]
)
async def test_resampler_filters_what_16k_cannot_hold(
    static_page: Page, input_rate: int, frequency: int
) -> None:
    output = np.array(await static_page.evaluate(RESAMPLE_JS, [input_rate, frequency, 1.0, 128]))
    rms = float(np.sqrt(np.mean(output[200:-200] ** 2)))
    assert rms < 0.003, f"{frequency} Hz aliased into the output at rms {rms:.4f} (input 0.354)"


async def test_resampler_output_does_not_depend_on_chunk_sizes(static_page: Page) -> None:
    whole = np.array(await static_page.evaluate(RESAMPLE_JS, [44100, 440, 0.5, 22050]))
    quanta = np.array(await static_page.evaluate(RESAMPLE_JS, [44100, 440, 0.5, 128]))
    odd = np.array(await static_page.evaluate(RESAMPLE_JS, [44100, 440, 0.5, 7]))
    assert whole.size == quanta.size == odd.size == 8000
    assert np.array_equal(whole, quanta) and np.array_equal(whole, odd)


async def test_float_to_int16_rounds_and_clips(static_page: Page) -> None:
    values = await static_page.evaluate(
        "Array.from(globalThis.HermesPcm.floatToInt16([-1.5, -1, -0.5, 0, 0.5, 1, 2]))"
    )
    assert values == [-32768, -32768, -16384, 0, 16384, 32767, 32767]


async def test_worklet_turns_rendered_audio_into_16k_pcm(static_page: Page) -> None:
    """The AudioWorklet itself, in an OfflineAudioContext at 48 kHz fed a 440 Hz oscillator."""
    samples = await static_page.evaluate(
        """async () => {
          const context = new OfflineAudioContext(1, 48000, 48000);
          await context.audioWorklet.addModule("/static/pcm-worklet.js");
          const node = new AudioWorkletNode(context, "pcm-worklet",
                                            { processorOptions: { targetRate: 16000 } });
          const chunks = [];
          const flushed = new Promise((resolve) => {
            node.port.onmessage = (event) => {
              if (event.data instanceof Int16Array) chunks.push(...event.data);
              else if (event.data.type === "flushed") resolve();
            };
          });
          const tone = new OscillatorNode(context, { frequency: 440 });
          const gain = new GainNode(context, { gain: 0.5 });
          tone.connect(gain).connect(node).connect(context.destination);
          tone.start();
          await context.startRendering();
          node.port.postMessage({ type: "flush" });
          await flushed;
          return chunks;
        }"""
    )
    pcm = np.array(samples, dtype=np.float64) / 32768
    assert abs(pcm.size - 16000) <= 1
    ideal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(pcm.size) / 16000)
    assert np.max(np.abs(pcm - ideal)[200:-200]) < 2e-3
