"""The `/stream-audio` WebSocket protocol message by message (docs/websocket-protocol.md),
against a scripted backend: what each client message gets, what the model's answers become
(`partial`, `final`, `skipped`), errors that keep the session going, and every close code.

Each binary message below is one chunk of audio, and the test waits for the gateway's answer
before the next one, so every step (on the shared beat, 0.25 s here) sees a known buffer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import aiohttp
import numpy as np
import pytest
import soxr
from aiohttp import WSMsgType

from gateway.core.contract import (
    AsrBusy,
    AsrFailed,
    AsrUnavailable,
    Priority,
    TranscribeOptions,
)
from gateway.modes import vad as vad_module
from gateway.modes.audio import SAMPLE_RATE
from gateway.server.keys import STREAMS
from testsupport.scripted_backend import ScriptedBackend, hear, low_passed, sounds
from testsupport.streams import pcm16

KEY, OTHER_KEY = "hk-stream-test-1", "hk-stream-test-2"


# --- helpers -------------------------------------------------------------------------------


def seconds(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]


def as_received(frame: bytes) -> np.ndarray:
    """PCM16 as the gateway turns it into samples."""
    return np.frombuffer(frame, "<i2").astype(np.float32) / 32768.0


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    message = await ws.receive(timeout=timeout)
    assert message.type == WSMsgType.TEXT, message
    return json.loads(message.data)


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str = "done") -> list[dict]:
    """Every message up to and including the first of type `kind`."""
    messages = [await receive(ws)]
    while messages[-1]["type"] != kind:
        messages.append(await receive(ws))
    return messages


async def closing(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    message = await ws.receive(timeout=5)
    assert message.type == WSMsgType.CLOSE, message
    return message


async def nothing_for(ws: aiohttp.ClientWebSocketResponse, wait: float) -> None:
    with pytest.raises(TimeoutError):
        message = await ws.receive(timeout=wait)
        pytest.fail(f"unexpected {message}")


async def calls_reach(backend: ScriptedBackend, count: int) -> None:
    async with asyncio.timeout(5):
        while len(backend.calls) < count:
            await asyncio.sleep(0.02)


async def streams_empty(client) -> None:
    async with asyncio.timeout(5):
        while client.server.app[STREAMS]:
            await asyncio.sleep(0.02)


# --- a session -----------------------------------------------------------------------------


async def test_a_session_message_by_message(make_client, jfk_audio) -> None:
    """partial → (final, partial) as two hypotheses agree → stop: final, partial "", done."""
    backend = ScriptedBackend(["one two", "one two three"])
    client = await make_client(backend)
    first, second = pcm16(seconds(jfk_audio, 0, 2.3)), pcm16(seconds(jfk_audio, 2.3, 4.6))
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "language": "en", "prompt": "Americans"})
        await ws.send_bytes(first)
        assert await receive(ws) == {"type": "partial", "text": " one two"}
        await ws.send_bytes(second)
        # the second hypothesis agrees on " one two": final; " three" is the new tail
        heard = sounds(as_received(first + second))
        start, end = heard[0][0], heard[-1][1]
        third = (end - start) / 3
        final = await receive(ws)
        assert (final["type"], final["text"], set(final)) == (
            "final",
            " one two",
            {"type", "text", "start", "end"},
        )
        assert final["start"] == pytest.approx(start, abs=0.002)
        assert final["end"] == pytest.approx(start + 2 * third, abs=0.002)
        assert await receive(ws) == {"type": "partial", "text": " three"}
        await ws.send_json({"type": "stop"})
        last = await until(ws, "done")
        assert last == [
            {"type": "final", "text": " three", "start": final["end"], "end": last[0]["end"]},
            {"type": "partial", "text": ""},
            {"type": "done"},
        ]
        assert last[0]["end"] == pytest.approx(end, abs=0.002)
        assert (await closing(ws)).data == 1000
    assert ws.close_code == 1000
    assert [call.text for call in backend.calls] == [" one two", " one two three", " one two three"]
    # the words' times without their probabilities (which only logprobs would show)
    words = TranscribeOptions(
        language="en", prompt="Americans", word_timestamps=True, word_times_only=True
    )
    step = replace(words, low_latency=True)
    # two steps of the buffer as it grew, the second with the first's segments as its draft
    # (both read from the stream's first sample), then the whole buffer read to its end:
    # decoded as a file window is, with the steps' encoder context, without a draft
    drafts = [call.options.draft for call in backend.calls]
    assert [[(s.text, s.start) for s in draft] for draft in drafts] == [
        [],
        [(" one two", final["start"])],
        [],
    ]
    assert [replace(call.options, draft=()) for call in backend.calls] == [
        step,
        step,
        replace(words, short_context=True),
    ]
    assert [call.seconds for call in backend.calls] == pytest.approx([2.3, 4.6, 4.6], abs=0.01)
    assert {call.priority for call in backend.calls} == {Priority.STREAM}


async def test_the_read_at_stop_uses_the_streams_own_detector_scores(
    make_client, jfk_audio, monkeypatch
) -> None:
    """The buffer read at `stop` is cut into windows where the stream's detector found its
    speech, without scoring the buffer again as an upload's file is scored."""
    scored_as_a_file = []
    monkeypatch.setattr(vad_module, "_scored_block", lambda *block: scored_as_a_file.append(block))
    backend = ScriptedBackend(["one two three", "one two three"])
    client = await make_client(backend)
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 4.6)))
        await receive(ws)
        await ws.send_json({"type": "stop"})
        texts = [m.get("text") for m in await until(ws, "done") if m["type"] == "final"]
    assert "".join(texts) == " one two three"
    assert backend.calls[-1].options.short_context and backend.calls[-1].seconds > 4.5
    assert scored_as_a_file == []


async def test_what_the_model_hears_becomes_final_at_stop(client, backend, jfk_audio) -> None:
    frame = pcm16(jfk_audio)
    heard = hear(as_received(frame), TranscribeOptions(word_timestamps=True))
    text = "".join(segment.text for segment in heard)
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(frame)
        assert await receive(ws) == {"type": "partial", "text": text}
        await ws.send_json({"type": "stop"})
        final, *rest = await until(ws, "done")
        assert rest == [{"type": "partial", "text": ""}, {"type": "done"}]
    assert final["type"] == "final" and final["text"] == text
    assert final["start"] == heard[0].start and final["end"] == heard[-1].end
    assert text.split() == [f"w{n}" for n in range(1, len(text.split()) + 1)]


async def test_a_step_waiting_for_the_model_at_stop_gives_way_to_the_end_read(
    client, backend, jfk_audio
) -> None:
    """The end read reads the whole buffer, so a step still held by the model is abandoned
    (its answer would come after the stop and be superseded) instead of queued before it."""
    first, second = pcm16(seconds(jfk_audio, 0, 2.3)), pcm16(seconds(jfk_audio, 2.3, 4.6))
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(first)
        assert (await receive(ws))["type"] == "partial"
        backend.hold()
        await ws.send_bytes(second)
        await backend.until_waiting(1)  # the step of 4.6 s, held
        await ws.send_json({"type": "stop"})
        await calls_reach(backend, 3)  # the end read comes while the step is still held
        backend.release()
        messages = await until(ws, "done")
    heard = hear(as_received(first + second), TranscribeOptions(word_timestamps=True))
    assert [call.seconds for call in backend.calls] == pytest.approx([2.3, 4.6, 4.6], abs=0.01)
    assert backend.calls[1].text == "" and backend.calls[2].text  # the step never answered
    assert [m["type"] for m in messages] == ["final", "partial", "done"]
    assert messages[0]["text"] == "".join(segment.text for segment in heard)


async def test_stop_before_any_audio_is_done_at_once(client, backend) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "language": "en"})
        await ws.send_json({"type": "stop"})
        assert await receive(ws) == {"type": "done"}
        assert (await closing(ws)).data == 1000
    assert backend.calls == []


async def test_silence_is_never_sent_to_the_model(client, backend) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(np.zeros(2 * SAMPLE_RATE, np.float32)))
        await nothing_for(ws, 0.8)  # three beats
        await ws.send_json({"type": "stop"})
        assert await until(ws) == [{"type": "done"}]
    assert backend.calls == []


async def test_a_client_that_just_goes_gets_no_flush(client, backend, jfk_audio) -> None:
    ws = await client.ws_connect("/stream-audio")
    await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
    assert (await receive(ws))["type"] == "partial"
    assert len(client.server.app[STREAMS]) == 1
    await ws.close()
    await streams_empty(client)
    assert [call.options.low_latency for call in backend.calls] == [True]  # no read to the end


# --- errors that keep the session going ----------------------------------------------------


BAD_MESSAGES = {
    "text that is not JSON": ("not json", "a text message must be JSON: config or stop"),
    "JSON nested too deep": ("[" * 100_000, "a text message must be JSON: config or stop"),
    "an unknown type": (
        '{"type": "dance"}',
        "unknown message type 'dance': expected config or stop",
    ),
    "a JSON array": ("[1, 2, 3]", "unknown message type None: expected config or stop"),
    "a type that is a number": ('{"type": 5}', "unknown message type 5: expected config or stop"),
    "a sample rate out of range": (
        '{"type": "config", "sample_rate": 3}',
        "bad config: sample_rate must be an integer from 8000 to 192000; "
        "keeping the previous settings",
    ),
    "an unknown config field": (
        '{"type": "config", "bitrate": 128}',
        "bad config: unknown config fields: bitrate; keeping the previous settings",
    ),
    "an unknown encoding": (
        '{"type": "config", "encoding": "mp3"}',
        "bad config: encoding must be one of pcm_s16le, f32le, pcm_mulaw, pcm_alaw; "
        "keeping the previous settings",
    ),
    "too many channels": (
        '{"type": "config", "channels": 9}',
        "bad config: channels must be an integer from 1 to 8; keeping the previous settings",
    ),
    "a language that is not a string": (
        '{"type": "config", "language": 5}',
        "bad config: config language must be a string; keeping the previous settings",
    ),
    "half a sample": (
        b"\x01\x02\x03",
        "a binary frame of 3 bytes is not a whole number of 2-byte samples; frame dropped",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
async def test_a_bad_message_gets_an_error_and_the_session_goes_on(
    client, backend, jfk_audio, case
) -> None:
    sent, said = BAD_MESSAGES[case]
    headers = {"X-Request-Id": "stream-trace-1"}
    async with client.ws_connect("/stream-audio", headers=headers) as ws:
        await (ws.send_bytes(sent) if isinstance(sent, bytes) else ws.send_str(sent))
        assert await receive(ws) == {
            "type": "error",
            "message": said,
            "request_id": "stream-trace-1",
        }
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert (await receive(ws))["type"] == "partial"
        await ws.send_json({"type": "stop"})
        assert [m["type"] for m in await until(ws)] == ["final", "partial", "done"]
        assert (await closing(ws)).data == 1000
    assert [call.seconds for call in backend.calls] == pytest.approx([2.3, 2.3], abs=0.01)


async def test_non_finite_float_samples_are_dropped(client, backend, jfk_audio) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "encoding": "f32le"})
        await ws.send_bytes(np.array([0.1, np.nan, np.inf], "<f4").tobytes())
        error = await receive(ws)
        assert error["message"] == "a frame contains NaN or infinite samples; frame dropped"
        await ws.send_bytes(seconds(jfk_audio, 0, 2.3).astype("<f4").tobytes())
        assert (await receive(ws))["type"] == "partial"
    assert backend.calls[0].seconds == pytest.approx(2.3, abs=0.01)


async def test_a_bad_config_keeps_the_previous_one(client, backend, jfk_audio) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "encoding": "f32le", "language": "en"})
        await ws.send_json({"type": "config", "sample_rate": 3})
        assert (await receive(ws))["message"].startswith("bad config: sample_rate")
        await ws.send_bytes(seconds(jfk_audio, 0, 2.3).astype("<f4").tobytes())
        assert (await receive(ws))["type"] == "partial"
    # still f32le (as PCM16 the same bytes would be 4.6 s of noise) and still English
    assert backend.calls[0].seconds == pytest.approx(2.3, abs=0.01)
    assert backend.calls[0].options.language == "en"


async def test_a_config_after_audio_is_ignored(client, backend, jfk_audio) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert (await receive(ws))["type"] == "partial"
        await ws.send_json({"type": "config", "sample_rate": 8000, "language": "de"})
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["message"] == "config must come before the first audio frame; ignored"
        await ws.send_bytes(pcm16(seconds(jfk_audio, 2.3, 4.6)))
        assert (await receive(ws))["type"] == "final"
    # read as 16 kHz, not resampled from 8 kHz (which would make 2.3 s of it 4.6 s)
    assert [call.seconds for call in backend.calls] == pytest.approx([2.3, 4.6], abs=0.01)
    assert {call.options.language for call in backend.calls} == {None}


async def test_other_rates_encodings_and_channels_become_16k_mono(
    client, backend, jfk_audio
) -> None:
    """48 kHz stereo float: the model gets 16 kHz mono, as long as what was sent."""
    at_48k = soxr.resample(seconds(jfk_audio, 0, 2.3), SAMPLE_RATE, 48_000)
    stereo = np.stack([at_48k, at_48k * 0.5], axis=1).astype("<f4")
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json(
            {"type": "config", "sample_rate": 48_000, "encoding": "f32le", "channels": 2}
        )
        await ws.send_bytes(stereo.tobytes())
        assert (await receive(ws))["type"] == "partial"
        await ws.send_json({"type": "stop"})
        assert (await until(ws))[-1] == {"type": "done"}
    assert backend.calls[0].seconds == pytest.approx(2.3, abs=0.03)
    assert backend.calls[-1].seconds == pytest.approx(2.3, abs=0.01)  # the resampler's tail too


# --- the model's errors --------------------------------------------------------------------


async def test_the_model_down_mid_stream_is_said_once_and_the_stream_resumes(
    make_client, jfk_audio
) -> None:
    backend = ScriptedBackend(["one two", "one two three", "one two three four"])
    client = await make_client(backend)
    async with client.ws_connect("/stream-audio", headers={"X-Request-Id": "outage"}) as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert await receive(ws) == {"type": "partial", "text": " one two"}
        backend.failure = AsrUnavailable("speech model unavailable: replica down")
        await ws.send_bytes(pcm16(seconds(jfk_audio, 2.3, 4.6)))
        assert await receive(ws) == {
            "type": "error",
            "message": "speech model unavailable: replica down; the stream stays open and "
            "resumes when it is back",
            "request_id": "outage",
        }
        await ws.send_bytes(pcm16(seconds(jfk_audio, 4.6, 7.0)))
        await calls_reach(backend, 3)
        await nothing_for(ws, 0.5)  # said once
        backend.failure = None
        await ws.send_bytes(pcm16(seconds(jfk_audio, 7.0, 9.0)))
        # back: the fourth call's hypothesis agrees with the first on " one two"
        final = await receive(ws)
        assert (final["type"], final["text"]) == ("final", " one two")
        assert await receive(ws) == {"type": "partial", "text": " three four"}
    assert backend.texts() == [" one two", "", "", " one two three four"]


async def test_a_busy_model_is_load_not_an_outage(make_client, jfk_audio) -> None:
    """Triton's queue turns steps away (full, or waited too long): nothing is said, the stream
    catches up when there is room, and what `stop` could not read is skipped as overload."""
    backend = ScriptedBackend(["one two", "one two three"])
    client = await make_client(backend)
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert await receive(ws) == {"type": "partial", "text": " one two"}
        backend.failure = AsrBusy("speech model busy: Request timeout expired")
        await ws.send_bytes(pcm16(seconds(jfk_audio, 2.3, 4.6)))
        await calls_reach(backend, 2)
        await nothing_for(ws, 0.5)  # no error: a busy model is not down
        await ws.send_json({"type": "stop"})
        final, skipped, partial, done = await until(ws)
    assert (final["type"], final["text"]) == ("final", " one two")
    assert skipped["type"] == "skipped" and skipped["reason"] == "overload"
    assert skipped["end"] == 4.6
    assert (partial, done) == ({"type": "partial", "text": ""}, {"type": "done"})


async def test_a_step_the_model_refuses_is_an_error_each_time(make_client, jfk_audio) -> None:
    client = await make_client(ScriptedBackend(languages={"en"}))
    async with client.ws_connect("/stream-audio", headers={"X-Request-Id": "refused"}) as ws:
        await ws.send_json({"type": "config", "language": "xx"})
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        refusal = {"type": "error", "message": "unknown language 'xx'", "request_id": "refused"}
        assert await receive(ws) == refusal
        await ws.send_bytes(pcm16(seconds(jfk_audio, 2.3, 4.6)))
        assert await receive(ws) == refusal
        await ws.send_json({"type": "stop"})
        # the read to the end, refused: every second of it said to be unheard, and why
        unheard = {"type": "skipped", "start": 0.0, "end": 4.6, "reason": "rejected"}
        assert await until(ws) == [unheard, {"type": "done"}]
        assert (await closing(ws)).data == 1000


async def test_a_model_fault_on_a_step_is_a_plain_error_and_the_stream_goes_on(
    make_client, jfk_audio
) -> None:
    backend = ScriptedBackend(["one two"])
    client = await make_client(backend)
    backend.failure = AsrFailed("speech model failed (StatusCode.INTERNAL): Traceback ...")
    async with client.ws_connect("/stream-audio", headers={"X-Request-Id": "fault"}) as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert await receive(ws) == {
            "type": "error",
            "message": "the speech model failed on this audio; the stream goes on",
            "request_id": "fault",
        }
        backend.failure = None
        await ws.send_bytes(pcm16(seconds(jfk_audio, 2.3, 4.6)))
        assert (await receive(ws))["type"] == "partial"


async def test_a_model_down_at_stop_keeps_the_last_words_and_skips_the_rest(
    make_client, jfk_audio
) -> None:
    """Triton goes away between the last step and `stop`: the words that step heard are
    final, and the audio after them, never read, is reported as skipped."""
    backend = ScriptedBackend(["one two three"])
    client = await make_client(backend)
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert await receive(ws) == {"type": "partial", "text": " one two three"}
        backend.failure = AsrUnavailable("speech model unavailable: replica down")
        await ws.send_bytes(pcm16(seconds(jfk_audio, 2.3, 4.6)))
        assert (await receive(ws))["type"] == "error"  # the step after it, said once
        await ws.send_json({"type": "stop"})
        final, skipped, partial, done = await until(ws)
        assert (final["type"], final["text"]) == ("final", " one two three")
        assert skipped == {
            "type": "skipped",
            "start": 2.3,
            "end": 4.6,
            "reason": "model_unavailable",
        }
        assert (partial, done) == ({"type": "partial", "text": ""}, {"type": "done"})


async def test_audio_the_model_never_heard_is_reported_skipped(make_client, jfk_audio) -> None:
    """Steps that fail keep the audio; past a window (30 s) the oldest goes, said as skipped
    with the reason, and the stream goes on with the newest."""
    backend = ScriptedBackend(["one two"])
    client = await make_client(backend, stream_max_frame_bytes=1 << 22)  # 33 s in one frame
    backend.failure = AsrUnavailable("speech model unavailable: replica down")
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        assert (await receive(ws))["type"] == "error"
        backend.failure = None
        await ws.send_bytes(pcm16(np.concatenate([jfk_audio] * 3)))  # 35.3 s buffered
        assert await receive(ws) == {
            "type": "skipped",
            "start": 0.0,
            "end": 5.3,
            "reason": "model_unavailable",
        }
        assert await receive(ws) == {"type": "partial", "text": " one two"}
    assert backend.calls[-1].seconds == pytest.approx(30.0, abs=0.01)


async def test_a_stream_ahead_of_the_model_skips_with_overload(make_client, jfk_audio) -> None:
    """While a step waits for the model, 33 s more come: the words heard before the cut are
    final as they are, the stretch never heard is skipped, and the newest 30 s are read."""
    backend = ScriptedBackend(["one two"])
    client = await make_client(backend, stream_max_frame_bytes=1 << 22)  # 33 s in one frame
    backend.hold()
    first = pcm16(seconds(jfk_audio, 0, 2.3))
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(first)
        await backend.until_waiting(1)
        await ws.send_bytes(pcm16(np.concatenate([jfk_audio] * 3)))
        backend.release()  # the next step drops the backlog, whenever that frame is in
        assert await receive(ws) == {"type": "partial", "text": " one two"}
        backend.hold()  # the next step's call is seen before the stream stops
        heard = sounds(as_received(first))
        final = await receive(ws)
        assert (final["type"], final["text"]) == ("final", " one two")
        assert final["start"] == pytest.approx(heard[0][0], abs=0.002)
        assert final["end"] == pytest.approx(heard[-1][1], abs=0.002)
        assert await receive(ws) == {
            "type": "skipped",
            "start": 2.3,
            "end": 5.3,
            "reason": "overload",
        }
        await backend.until_waiting(1)
        backend.release()
    assert [call.seconds for call in backend.calls] == pytest.approx([2.3, 30.0], abs=0.01)


# --- close codes ---------------------------------------------------------------------------


async def test_an_idle_stream_is_closed_with_1008(make_client) -> None:
    client = await make_client(stream_idle_timeout_s=0.5)
    async with client.ws_connect("/stream-audio", headers={"X-Request-Id": "idle"}) as ws:
        assert await receive(ws) == {
            "type": "error",
            "message": "no audio or message for 0.5 s; closing",
            "request_id": "idle",
        }
        message = await closing(ws)
        assert (message.data, message.extra) == (1008, "idle timeout")
    await streams_empty(client)


async def test_tiny_frames_do_not_keep_a_stream_open(make_client) -> None:
    """A sample every 0.1 s is not audio to the idle timeout."""
    client = await make_client(stream_idle_timeout_s=0.5)
    async with client.ws_connect("/stream-audio") as ws:

        async def trickle() -> None:
            while not ws.closed:
                await ws.send_bytes(b"\x00\x00")
                await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        try:
            error = await receive(ws, timeout=3)
            assert error["message"] == "no audio or message for 0.5 s; closing"
            assert (await closing(ws)).data == 1008
        finally:
            trickling.cancel()


async def test_a_client_far_ahead_of_real_time_holds_a_bounded_backlog(
    make_client, backend, jfk_audio
) -> None:
    """While the model works on a step, 44 s more arrive: past 40 s held, the oldest audio
    goes at once (said as skipped), not at the next step; what the step was hearing in the
    dropped audio is not made final afterwards, and `stop` reads only what is held."""
    client = await make_client(stream_max_buffer_seconds=40, stream_max_frame_bytes=1 << 22)
    backend.hold()
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        await backend.until_waiting(1)
        for _ in range(4):
            await ws.send_bytes(pcm16(jfk_audio))
        skipped = await receive(ws)
        assert skipped == {"type": "skipped", "start": 0.0, "end": 16.3, "reason": "overload"}
        backend.release()
        await ws.send_json({"type": "stop"})
        messages = await until(ws)
    finals = [m for m in messages if m["type"] == "final"]
    assert finals and all(final["start"] >= 16.3 for final in finals)
    assert backend.calls[0].seconds == pytest.approx(2.3, abs=0.05)
    assert sum(call.seconds for call in backend.calls[1:]) <= 30.5  # the held 30 s, once


async def test_a_session_ends_at_its_longest(make_client, jfk_audio) -> None:
    client = await make_client(stream_max_session_s=1.0)
    async with client.ws_connect("/stream-audio", headers={"X-Request-Id": "long"}) as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        messages = await until(ws)
        assert {
            "type": "error",
            "message": "the stream reached the longest session, 1 s",
            "request_id": "long",
        } in messages
        assert messages[-1] == {"type": "done"}
        message = await closing(ws)
        assert (message.data, message.extra) == (1008, "session too long")


async def test_a_session_without_a_request_id_gets_one(make_client) -> None:
    client = await make_client(stream_idle_timeout_s=0.3)
    async with client.ws_connect("/stream-audio") as ws:
        error = await receive(ws)
    assert len(error["request_id"]) == 32 and int(error["request_id"], 16) >= 0


async def test_streams_beyond_the_limit_are_closed_with_1013(make_client) -> None:
    client = await make_client(max_streams=1)
    first = await client.ws_connect("/stream-audio")
    second = await client.ws_connect("/stream-audio")
    message = await closing(second)
    assert (message.data, message.extra) == (
        1013,
        "too many streams: the limit is 1; try again later",
    )
    await first.send_json({"type": "stop"})  # the first is not disturbed
    assert await receive(first) == {"type": "done"}
    await first.close()
    await streams_empty(client)
    async with client.ws_connect("/stream-audio") as third:  # its place is free again
        await third.send_json({"type": "stop"})
        assert await receive(third) == {"type": "done"}


async def test_streams_per_api_key_are_closed_with_1013(make_client) -> None:
    client = await make_client(
        api_keys=f"{KEY},{OTHER_KEY}", max_streams=4, max_streams_per_client=1
    )
    first = await client.ws_connect(f"/stream-audio?token={KEY}")
    second = await client.ws_connect("/stream-audio", headers={"Authorization": f"Bearer {KEY}"})
    message = await closing(second)
    assert (message.data, message.extra) == (
        1013,
        "too many streams from this client: the limit is 1; try again later",
    )
    async with client.ws_connect(f"/stream-audio?token={OTHER_KEY}") as other:
        await other.send_json({"type": "stop"})
        assert await receive(other) == {"type": "done"}
    await first.close()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/stream-audio", {}),
        ("/stream-audio?token=wrong", {}),
        ("/stream-audio", {"Authorization": "Bearer wrong"}),
    ],
)
async def test_a_stream_without_a_valid_key_is_refused_before_the_upgrade(
    make_client, path, headers
) -> None:
    client = await make_client(api_keys=KEY)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(path, headers=headers)
    assert refused.value.status == 401
    assert not client.server.app[STREAMS]


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_a_frame_over_the_size_limit_closes_with_1009(make_client, backend, compress) -> None:
    client = await make_client(stream_max_frame_bytes=4096)
    async with client.ws_connect("/stream-audio", compress=compress) as ws:
        await ws.send_bytes(b"\x00" * 4098)
        message = await closing(ws)
        assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG == 1009
    await streams_empty(client)
    async with client.ws_connect("/stream-audio", compress=compress) as ws:  # the next is served
        await ws.send_bytes(b"\x00" * 2048)
        await ws.send_json({"type": "stop"})
        assert await receive(ws) == {"type": "done"}
    assert backend.calls == []


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_a_frame_of_exactly_the_size_limit_is_taken(make_client, backend, compress) -> None:
    """The limit is the largest frame taken, not the smallest refused (aiohttp refuses a plain
    message of `max_msg_size` bytes, a compressed one only beyond)."""
    client = await make_client(stream_max_frame_bytes=4096)
    async with client.ws_connect("/stream-audio", compress=compress) as ws:
        await ws.send_bytes(b"\x00" * 4096)
        await ws.send_json({"type": "stop"})
        assert await receive(ws) == {"type": "done"}
    assert backend.calls == []


async def test_shutdown_flushes_every_stream_then_closes_with_1001(client, jfk_audio) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(seconds(jfk_audio, 0, 2.3)))
        partial = await receive(ws)
        assert partial["type"] == "partial"
        shutdown = asyncio.create_task(client.server.close())
        final, *rest = await until(ws)
        assert (final["type"], final["text"], set(final)) == (
            "final",
            partial["text"],
            {"type", "text", "start", "end"},
        )
        assert rest == [{"type": "partial", "text": ""}, {"type": "done"}]
        message = await closing(ws)
        assert (message.data, message.extra) == (1001, "server shutting down")
        await shutdown


# --- speech events and hotwords ------------------------------------------------------------


async def test_speech_events_mark_each_utterance_when_asked(client, backend, jfk_audio) -> None:
    """JFK's first 2.5 s, a second of silence, and again: speech_started and speech_stopped
    around each (the detector's own times, the stop half a second after the speech), and the
    hotwords reach the model before the prompt."""
    speech, quiet = seconds(jfk_audio, 0, 2.5), np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([speech, quiet, speech, quiet])
    frame = int(0.1 * SAMPLE_RATE)
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json(
            {
                "type": "config",
                "speech_events": True,
                "hotwords": ["Kennedy", "Americans"],
                "prompt": "A speech.",
            }
        )
        for start in range(0, audio.size, frame):
            await ws.send_bytes(pcm16(audio[start : start + frame]))
        await ws.send_json({"type": "stop"})
        messages = await until(ws, "done")
    events = [m for m in messages if m["type"].startswith("speech_")]
    assert [m["type"] for m in events] == ["speech_started", "speech_stopped"] * 2
    starts = [m["start"] for m in events[::2]]
    stops = [m["end"] for m in events[1::2]]
    # JFK speaks from about 0.35 s (at stream start the detector may open a little early)
    assert starts[0] == pytest.approx(0.2, abs=0.2)
    assert starts[1] == pytest.approx(3.85, abs=0.15)
    assert stops == pytest.approx([3.0, 6.5], abs=0.3)
    assert {call.options.prompt for call in backend.calls} == {"Kennedy, Americans A speech."}


async def test_the_stream_reads_on_while_speech_events_wait_for_the_detector(
    client, backend, jfk_audio, held_detector
) -> None:
    """Speech events are looked for beside the receive path: while the detector's round is
    held, a message after the audio is still answered; then the events come, before done."""
    speech, quiet = seconds(jfk_audio, 0, 2.5), np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([speech, quiet])
    frame = int(0.1 * SAMPLE_RATE)
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "speech_events": True})
        for start in range(0, audio.size, frame):
            await ws.send_bytes(pcm16(audio[start : start + frame]))
        await ws.send_json({"type": "hello"})
        answer = await receive(ws)
        assert answer["type"] == "error" and "unknown message type 'hello'" in answer["message"]
        held_detector.set()
        await ws.send_json({"type": "stop"})
        messages = await until(ws, "done")
    events = [m for m in messages if m["type"].startswith("speech_")]
    assert [m["type"] for m in events] == ["speech_started", "speech_stopped"]
    assert events[1]["end"] == pytest.approx(3.0, abs=0.3)


async def test_without_speech_events_none_are_sent(client, backend, jfk_audio) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_bytes(pcm16(jfk_audio))
        await ws.send_json({"type": "stop"})
        messages = await until(ws, "done")
    assert {m["type"] for m in messages} <= {"partial", "final", "done"}


async def test_diarize_puts_a_stable_speaker_on_each_final(client, backend, jfk_audio) -> None:
    """JFK, JFK low-passed (the scripted backend's second voice), JFK again, each followed by
    a second of silence so that each becomes a final of its own: A, B, A."""
    quiet = np.zeros(SAMPLE_RATE, np.float32)
    turns = [jfk_audio, low_passed(jfk_audio), jfk_audio]
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "diarize": True})
        finals = []
        for turn in turns:
            await ws.send_bytes(pcm16(np.concatenate([turn, quiet])))
            finals.append(next(m for m in await until(ws, "final") if m["type"] == "final"))
        await ws.send_json({"type": "stop"})
        finals += [m for m in await until(ws, "done") if m["type"] == "final"]
    assert [final["speaker"] for final in finals] == ["A", "B", "A"]
    # each final's own audio went to the speaker model
    assert backend.speaker_calls == pytest.approx(
        [final["end"] - final["start"] for final in finals], abs=0.01
    )


async def test_diarize_must_be_true_or_false(client, backend, jfk_audio) -> None:
    async with client.ws_connect("/stream-audio") as ws:
        await ws.send_json({"type": "config", "diarize": "yes"})
        error = await receive(ws)
        assert error["type"] == "error" and "diarize must be true or false" in error["message"]
        await ws.send_bytes(pcm16(jfk_audio))
        await ws.send_json({"type": "stop"})
        finals = [m for m in await until(ws, "done") if m["type"] == "final"]
    assert finals and all("speaker" not in final for final in finals)
    assert backend.speaker_calls == []
