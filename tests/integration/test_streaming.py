"""Real-time mode through the whole stack: WebSocket → gateway → real Triton → tiny.en."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import aiohttp
import numpy as np
import pytest
import soundfile

from gateway.backend.triton_client import TritonAsr
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_input import FrameDecoder, StreamConfig
from gateway.modes.streaming import StreamSession
from gateway.server.settings import Settings
from gateway.tools.local_triton import LocalTriton
from testsupport.clips import DATA_DIR
from testsupport.streams import assert_protocol, pcm16, stream
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration


@pytest.fixture
async def stream_gateway(make_gateway, gateway_settings: Settings):
    return await make_gateway(gateway_settings)


async def test_jfk_streams_word_for_word_and_commits_before_the_end(stream_gateway, clips) -> None:
    clip = clips["jfk.flac"]
    # real time, as the protocol is meant: steps follow the wall-clock beat
    run = await stream(stream_gateway, pcm16(clip.audio), bytes_per_second=32000, pace=1.0)
    assert_protocol(run)
    assert word_error_rate(clip.text, run.text) == 0.0, run.text
    assert run.first_final_at is not None and run.first_final_at < run.last_frame_at
    assert run.of_type("final")[-1]["end"] <= 11.1
    assert run.of_type("partial")[-1]["text"] == ""  # nothing left unconfirmed


async def test_harvard_streams_within_five_percent(stream_gateway, clips) -> None:
    clip = clips["OSR_us_000_0034_8k.wav"]
    run = await stream(stream_gateway, pcm16(clip.audio), bytes_per_second=32000, pace=4.0)
    assert_protocol(run)
    assert word_error_rate(clip.text, run.text) <= 0.05, run.text


async def test_8khz_pcm16_input(stream_gateway, clips) -> None:
    samples, rate = soundfile.read(DATA_DIR / "OSR_us_000_0034_8k.wav", dtype="int16")
    assert rate == 8000
    run = await stream(
        stream_gateway,
        samples.astype("<i2").tobytes(),
        bytes_per_second=16000,
        config={"sample_rate": 8000},
    )
    assert_protocol(run)
    assert word_error_rate(clips["OSR_us_000_0034_8k.wav"].text, run.text) <= 0.05, run.text


async def test_44k_stereo_f32_input_is_downmixed(stream_gateway, clips) -> None:
    samples, rate = soundfile.read(DATA_DIR / "jfk.flac", dtype="float32")
    assert rate == 44100 and samples.shape[1] == 2
    run = await stream(
        stream_gateway,
        samples.astype("<f4").tobytes(),
        bytes_per_second=44100 * 8,
        config={"sample_rate": 44100, "encoding": "f32le", "channels": 2},
    )
    assert_protocol(run)
    assert word_error_rate(clips["jfk.flac"].text, run.text) == 0.0, run.text


async def test_silence_commits_nothing(stream_gateway) -> None:
    silence = np.random.default_rng(5).standard_normal(8 * 16000).astype(np.float32) * 3e-4
    run = await stream(stream_gateway, pcm16(silence), bytes_per_second=32000, pace=8.0)
    assert [m["type"] for m in run.messages] == ["done"]


async def test_speech_after_a_pause_longer_than_a_window_keeps_every_word(
    stream_gateway, clips
) -> None:
    """The committed words' audio stays as lead-in; the pause after it must not pile up
    behind it (it did: 30 s later the window was mostly silence and the next sentence lost)."""
    jfk = clips["jfk.flac"]
    pause = np.random.default_rng(5).standard_normal(35 * 16000).astype(np.float32) * 3e-4
    audio = np.concatenate([jfk.audio, pause, jfk.audio])
    run = await stream(stream_gateway, pcm16(audio), bytes_per_second=32000, pace=4.0)
    assert_protocol(run)
    assert word_error_rate(f"{jfk.text} {jfk.text}", run.text) == 0.0, run.text
    assert not run.of_type("skipped")


async def test_two_streams_and_an_upload_at_once(stream_gateway, clips) -> None:
    jfk, harvard = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    upload = aiohttp.FormData()
    upload.add_field("file", harvard.path.read_bytes(), filename=harvard.path.name)

    async def transcribe_file() -> str:
        reply = await stream_gateway.post("/transcribe", data=upload)
        return (await reply.json())["text"]

    first, second, file_text = await asyncio.gather(
        stream(stream_gateway, pcm16(jfk.audio), bytes_per_second=32000, pace=1.5),
        stream(stream_gateway, pcm16(harvard.audio), bytes_per_second=32000, pace=1.5),
        transcribe_file(),
    )
    assert word_error_rate(jfk.text, first.text) == 0.0, first.text
    assert word_error_rate(harvard.text, second.text) <= 0.05, second.text
    assert word_error_rate(harvard.text, file_text) == 0.0, file_text


async def test_malformed_messages_get_errors_and_the_stream_goes_on(stream_gateway, clips) -> None:
    clip = clips["jfk.flac"]
    run = await stream(
        stream_gateway,
        pcm16(clip.audio),
        bytes_per_second=32000,
        config={"sample_rate": 3},
        before_audio=["not json", '{"type": "dance"}', b"\x01\x02\x03"],
    )
    errors = [m["message"] for m in run.of_type("error")]
    assert any("bad config: sample_rate must be" in e for e in errors)
    assert any("must be JSON" in e for e in errors)
    assert any("unknown message type 'dance'" in e for e in errors)
    assert any("not a whole number" in e for e in errors)
    run.messages = [m for m in run.messages if m["type"] != "error"]
    assert_protocol(run)
    assert word_error_rate(clip.text, run.text) == 0.0, run.text


async def test_config_after_audio_is_refused(stream_gateway, clips) -> None:
    clip = clips["jfk.flac"]
    late_config = json.dumps({"type": "config", "sample_rate": 8000})
    run = await stream(
        stream_gateway,
        pcm16(clip.audio[:16000]),
        bytes_per_second=32000,
        before_audio=[pcm16(clip.audio[:1600]), late_config],
    )
    assert any(
        "config must come before the first audio" in m["message"] for m in run.of_type("error")
    )


async def test_abrupt_disconnect_frees_the_stream(stream_gateway, clips) -> None:
    app = stream_gateway.server.app
    from gateway.server.keys import STREAMS

    ws = await stream_gateway.ws_connect("/stream-audio")
    await ws.send_bytes(pcm16(clips["jfk.flac"].audio[: 5 * 16000]))
    await asyncio.sleep(0.5)
    assert len(app[STREAMS]) == 1
    await ws.close()
    for _ in range(50):
        if not app[STREAMS]:
            break
        await asyncio.sleep(0.1)
    assert not app[STREAMS]
    run = await stream(stream_gateway, pcm16(clips["jfk.flac"].audio), bytes_per_second=32000)
    assert word_error_rate(clips["jfk.flac"].text, run.text) == 0.0


async def test_the_stream_limit_refuses_with_a_reason(make_gateway, gateway_settings) -> None:
    limited = await make_gateway(replace(gateway_settings, max_streams=1))
    first = await limited.ws_connect("/stream-audio")
    second = await limited.ws_connect("/stream-audio")
    message = await second.receive()
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert second.close_code == 1013 and "too many streams" in message.extra
    await first.close()


async def test_an_idle_stream_times_out(make_gateway, gateway_settings) -> None:
    impatient = await make_gateway(replace(gateway_settings, stream_idle_timeout_s=1.0))
    ws = await impatient.ws_connect("/stream-audio")
    error = await ws.receive_json(timeout=5)
    assert error["type"] == "error" and "no audio or message for 1 s" in error["message"]
    closing = await ws.receive(timeout=5)
    assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1008


@pytest.mark.parametrize("pause_s, tail_s", [(12.0, 4.0), (27.0, 3.0)])
async def test_a_long_pause_in_the_buffer_loses_no_word_on_either_side(
    triton: LocalTriton, clips, pause_s: float, tail_s: float
) -> None:
    """What a model outage leaves in a stream's buffer: the end of a sentence nobody heard, a
    long pause, then speech again. Heard as one window, Whisper left out either side ("can do
    for your country", "And so my fellow Americans"); both must come through."""
    jfk = clips["jfk.flac"]
    backend = TritonAsr(triton.grpc_url, "whisper", timeout_s=120, ready_timeout_s=5)
    session = StreamSession(backend, StreamConfig(), min_new_audio_s=0.5)
    session.append(
        np.concatenate(
            [
                jfk.audio[-int(tail_s * SAMPLE_RATE) :],
                np.zeros(int(pause_s * SAMPLE_RATE), np.float32),
            ]
        )
    )
    messages = []
    second = SAMPLE_RATE
    for offset in range(0, jfk.audio.size, second):  # a step on every second of new speech
        session.append(jfk.audio[offset : offset + second])
        messages += await session.step()
    messages += await session.finish(FrameDecoder(StreamConfig()).flush())
    text = "".join(m["text"] for m in messages if m["type"] == "final")
    tail = (
        "ask what you can do for your country."
        if tail_s == 3.0
        else "for you, ask what you can do for your country."
    )
    assert word_error_rate(f"{tail} {jfk.text}", text) <= 0.1, text
    assert not [m for m in messages if m["type"] == "skipped"]
