"""OpenAI's Realtime transcription through the whole stack: the official `openai` SDK's
realtime client (and raw frames) → /v1/realtime → the real Triton → tiny.en, checked by word
error rate against the clips' known text."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest
import soxr
from openai import AsyncOpenAI

from gateway.modes.audio import SAMPLE_RATE
from testsupport.streams import pcm16
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration

COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
CHUNK_S = 0.1


def pcm24k(audio: np.ndarray) -> bytes:
    return pcm16(soxr.resample(audio, SAMPLE_RATE, 24_000))


@asynccontextmanager
async def updated_session(gateway, query: str, update: dict) -> AsyncIterator:
    """A raw WebSocket to /v1/realtime?`query`, its session created and then updated with
    `update` (a `session.update` or the beta `transcription_session.update`)."""
    async with gateway.ws_connect(f"/v1/realtime?{query}") as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "session.created"
        await ws.send_json(update)
        assert (await ws.receive_json(timeout=10))["type"] == update["type"] + "d"
        yield ws


async def test_the_openai_sdk_transcribes_live_speech_with_server_vad(gateway, clips) -> None:
    """JFK at real-time pace, then silence: the SDK's own client, deltas while JFK speaks,
    each item's deltas its transcript, every word right."""
    clip = clips["jfk.flac"]
    audio = pcm24k(np.concatenate([clip.audio, np.zeros(2 * SAMPLE_RATE, np.float32)]))
    client = AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")),
        websocket_base_url=str(gateway.make_url("/v1")).replace("http", "ws", 1),
        api_key="not-checked",
    )
    events: list[tuple[float, object]] = []
    async with client.realtime.connect(
        model="whisper-1", extra_query={"intent": "transcription"}
    ) as connection:
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "whisper-1", "language": "en"},
                        # JFK pauses for breath: a turn ends only at the silence after him
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 1500},
                    }
                },
            }
        )

        async def receive() -> None:
            async for event in connection:
                events.append((time.monotonic(), event))
                if event.type == COMPLETED:
                    return

        receiving = asyncio.create_task(receive())
        step = int(CHUNK_S * 24_000) * 2
        started = time.monotonic()
        for index, start in enumerate(range(0, len(audio), step)):
            chunk = base64.b64encode(audio[start : start + step]).decode()
            await connection.input_audio_buffer.append(audio=chunk)
            await asyncio.sleep(max(0.0, started + (index + 1) * CHUNK_S - time.monotonic()))
        speech_sent = started + clip.audio.size / SAMPLE_RATE
        await asyncio.wait_for(receiving, timeout=60)

    types = [event.type for _, event in events]
    assert types[0] == "session.created" and "session.updated" in types
    assert types.count("input_audio_buffer.speech_started") == 1
    assert types.count("input_audio_buffer.committed") == 1
    (completed,) = [event for _, event in events if event.type == COMPLETED]
    deltas = [(at, event) for at, event in events if event.type == DELTA]
    assert "".join(event.delta for _, event in deltas) == completed.transcript
    assert word_error_rate(clip.text, completed.transcript) == 0.0, completed.transcript
    assert completed.usage.type == "duration" and completed.usage.seconds > 11
    # live: words came while JFK was still speaking, not only at the end of the turn
    assert deltas and deltas[0][0] < speech_sent


async def test_raw_frames_faster_than_real_time_with_manual_commits(gateway, clips) -> None:
    """The Harvard sentences sent at once and committed by the client, in two turns: each
    turn completed in order, the two transcripts together within 10 % WER."""
    clip = clips["OSR_us_000_0034_8k.wav"]
    # cut in the pause nearest the middle, so that no word is split between the turns
    frames = np.abs(clip.audio[: clip.audio.size // 800 * 800]).reshape(-1, 800).max(axis=1)
    middle = len(frames) // 2
    quiet = middle - 60 + int(np.argmin(frames[middle - 60 : middle + 60]))
    turns = [clip.audio[: quiet * 800], clip.audio[quiet * 800 :]]
    update = {
        "type": "transcription_session.update",
        "session": {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": None,
        },
    }
    async with updated_session(gateway, "intent=transcription", update) as ws:
        for turn in turns:
            encoded = base64.b64encode(pcm24k(turn)).decode()
            await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": encoded}))
            await ws.send_json({"type": "input_audio_buffer.commit"})
        events = []
        while sum(event["type"] == COMPLETED for event in events) < 2:
            events.append(await ws.receive_json(timeout=120))
    committed = [e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed"]
    completed = [e for e in events if e["type"] == COMPLETED]
    assert [e["item_id"] for e in completed] == committed
    for item in completed:
        deltas = [
            e["delta"] for e in events if e["type"] == DELTA and e["item_id"] == item["item_id"]
        ]
        assert "".join(deltas) == item["transcript"]
    text = " ".join(item["transcript"] for item in completed)
    assert word_error_rate(clip.text, text) <= 0.10, text
    seconds = [item["usage"]["seconds"] for item in completed]
    assert sum(seconds) == pytest.approx(clip.audio.size / SAMPLE_RATE, abs=0.1)


async def test_with_diarize_each_item_names_its_speaker(gateway, clips) -> None:
    """JFK, the Harvard reader, JFK again, each committed by the client: the speaker model
    names the items A, B, A, and the transcripts are those of the clips."""
    jfk, reader = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    turns = [jfk, reader, jfk]
    update = {
        "type": "session.update",
        "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
    }
    async with updated_session(gateway, "intent=transcription&diarize=true", update) as ws:
        for turn in turns:
            pcm = pcm24k(turn.audio)
            for start in range(0, len(pcm), 48_000):  # 1 s a message, well under 1 MiB
                encoded = base64.b64encode(pcm[start : start + 48_000]).decode()
                await ws.send_json({"type": "input_audio_buffer.append", "audio": encoded})
            await ws.send_json({"type": "input_audio_buffer.commit"})
        completed = []
        while len(completed) < len(turns):
            event = await ws.receive_json(timeout=120)
            if event["type"] == COMPLETED:
                completed.append(event)
    assert [item["speaker"] for item in completed] == ["A", "B", "A"]
    for turn, item in zip(turns, completed, strict=True):
        assert word_error_rate(turn.text, item["transcript"]) <= 0.10, item["transcript"]
