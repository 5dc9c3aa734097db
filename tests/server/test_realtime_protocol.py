"""The Realtime API's transcription sessions (`/v1/realtime?intent=transcription`,
docs/realtime.md) event by event, against a scripted backend and the real voice detector:
the session's settings, turns ended by the client and by the detector's pause, deltas that
concatenate to the completed transcript, and every refused event."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import numpy as np
import pytest
import soxr
from aiohttp import WSMsgType

from gateway.core.contract import AsrFailed, AsrUnavailable, Priority
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.g711 import MULAW
from testsupport.scripted_backend import hear, low_passed
from testsupport.streams import pcm16

PATH = "/v1/realtime?intent=transcription"
MANUAL = {
    "type": "session.update",
    "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
}


def at_24k(audio: np.ndarray) -> np.ndarray:
    return soxr.resample(audio, SAMPLE_RATE, 24_000).astype(np.float32)


def append(audio_bytes: bytes) -> dict:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio_bytes).decode()}


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    message = await ws.receive(timeout=timeout)
    assert message.type == WSMsgType.TEXT, message
    event = json.loads(message.data)
    assert event["event_id"].startswith("event_")
    return event


async def until(ws, kind: str, timeout: float = 10.0) -> list[dict]:
    """Every event up to and including the first of type `kind`."""
    events = [await receive(ws, timeout)]
    while events[-1]["type"] != kind:
        events.append(await receive(ws, timeout))
    return events


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


async def send_in_chunks(ws, audio_24k: np.ndarray, chunk_s: float = 0.1) -> None:
    step = int(chunk_s * 24_000)
    for start in range(0, audio_24k.size, step):
        await ws.send_json(append(pcm16(audio_24k[start : start + step])))


COMPLETED = "conversation.item.input_audio_transcription.completed"


async def manual_commits(ws) -> None:
    """Turn server VAD off: the client ends each turn."""
    await ws.send_json(MANUAL)
    assert (await receive(ws))["type"] == "session.updated"


async def one_turn(ws, audio: np.ndarray, last: str = COMPLETED) -> list[dict]:
    """16 kHz `audio` sent as one append at 24 kHz and committed; the events to `last`."""
    await ws.send_json(append(pcm16(at_24k(audio))))
    await ws.send_json({"type": "input_audio_buffer.commit"})
    return await until(ws, last)


async def opened(ws) -> dict:
    created = await receive(ws)
    assert created["type"] == "session.created"
    return created["session"]


def whole_turn_heard(audio_24k: np.ndarray, backend) -> str:
    """What the scripted model hears in a turn of `audio_24k` read to its end as a file is."""
    received = soxr.resample(
        np.frombuffer(pcm16(audio_24k), "<i2").astype(np.float32) / 32768, 24_000, SAMPLE_RATE
    )
    return "".join(s.text for s in hear(received, backend.calls[-1].options)).strip()


# --- the session ---------------------------------------------------------------------------


async def test_a_session_opens_with_openais_defaults_and_takes_updates(client) -> None:
    async with client.ws_connect(PATH) as ws:
        session = await opened(ws)
        assert session["type"] == "transcription" and session["id"].startswith("sess_")
        assert session["object"] == "realtime.transcription_session"
        assert session["audio"]["input"] == {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "whisper-1", "language": None, "prompt": ""},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
            },
            "noise_reduction": None,
        }
        await ws.send_json(
            {
                "type": "session.update",
                "event_id": "mine",
                "session": {
                    "type": "transcription",
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcmu"},
                            "transcription": {
                                "model": "whisper-1",
                                "language": "en",
                                "prompt": "Triton",
                            },
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800},
                            "noise_reduction": {"type": "near_field"},
                        }
                    },
                    "include": ["item.input_audio_transcription.logprobs"],
                },
            }
        )
        updated = await receive(ws)
        assert updated["type"] == "session.updated"
        given = updated["session"]["audio"]["input"]
        assert given["format"] == {"type": "audio/pcmu"}
        assert given["transcription"] == {
            "model": "whisper-1",
            "language": "en",
            "prompt": "Triton",
        }
        assert given["turn_detection"]["silence_duration_ms"] == 800
        assert given["turn_detection"]["threshold"] == 0.5  # the rest kept
        assert given["noise_reduction"] == {"type": "near_field"}
        assert updated["session"]["include"] == ["item.input_audio_transcription.logprobs"]


async def test_the_older_transcription_session_shape_is_answered_in_kind(client) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await ws.send_json(
            {
                "type": "transcription_session.update",
                "session": {
                    "input_audio_format": "g711_alaw",
                    "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                    "turn_detection": None,
                },
            }
        )
        updated = await receive(ws)
        assert updated["type"] == "transcription_session.updated"
        assert updated["session"]["input_audio_format"] == "g711_alaw"
        assert updated["session"]["turn_detection"] is None
        assert updated["session"]["input_audio_transcription"]["language"] == "en"


async def test_without_the_transcription_intent_the_upgrade_is_refused(client) -> None:
    response = await client.get(
        "/v1/realtime", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "invalid_intent" and body["error"]["param"] == "intent"


# --- turns ---------------------------------------------------------------------------------


async def test_with_diarize_each_item_names_its_speaker_for_the_whole_session(
    client, backend, jfk_audio
) -> None:
    """JFK, then JFK low-passed (the scripted speaker model's second voice), then JFK: each
    `completed` names a speaker, the first voice's the same both times."""
    async with client.ws_connect(PATH + "&diarize=true") as ws:
        await opened(ws)
        await manual_commits(ws)
        completed = [
            (await one_turn(ws, audio))[-1]
            for audio in (jfk_audio, low_passed(jfk_audio), jfk_audio)
        ]
    assert [event["speaker"] for event in completed] == ["A", "B", "A"]
    assert all(event["transcript"] for event in completed)


async def test_without_diarize_items_name_no_speaker(client, backend, jfk_audio) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        completed = (await one_turn(ws, jfk_audio))[-1]
    assert "speaker" not in completed and backend.speaker_calls == []


async def test_diarize_must_be_true_or_false(client) -> None:
    response = await client.get(
        PATH + "&diarize=maybe", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "invalid_value"
    assert body["error"]["message"] == "diarize must be true or false, got 'maybe'"


async def test_a_committed_turn_streams_deltas_that_make_its_transcript(
    client, backend, jfk_audio
) -> None:
    audio = at_24k(jfk_audio)
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        await send_in_chunks(ws, audio, chunk_s=1.0)
        await asyncio.sleep(0.6)  # a couple of beats: steps run while the turn is open
        await ws.send_json({"type": "input_audio_buffer.commit"})
        events = await until(ws, COMPLETED)
    (committed,) = of_type(events, "input_audio_buffer.committed")
    assert committed["previous_item_id"] is None and committed["item_id"].startswith("item_")
    deltas = of_type(events, "conversation.item.input_audio_transcription.delta")
    completed = events[-1]
    assert {d["item_id"] for d in deltas} == {completed["item_id"]} == {committed["item_id"]}
    assert all(d["content_index"] == 0 for d in deltas) and completed["content_index"] == 0
    assert "".join(d["delta"] for d in deltas) == completed["transcript"]
    expected = whole_turn_heard(audio, backend)
    assert completed["transcript"] == expected and len(expected.split()) > 10
    assert completed["usage"] == {"type": "duration", "seconds": pytest.approx(11.0, abs=0.05)}
    assert {call.priority for call in backend.calls} == {Priority.STREAM}


def two_utterances(jfk_audio: np.ndarray) -> np.ndarray:
    """JFK's first 2.5 s, a second of silence, the same again: at 24 kHz."""
    speech = jfk_audio[: int(2.5 * SAMPLE_RATE)]
    quiet = np.zeros(SAMPLE_RATE, np.float32)
    return at_24k(np.concatenate([speech, quiet, speech, quiet]))


async def test_server_vad_ends_each_turn_at_the_pause(client, backend, jfk_audio) -> None:
    """Two utterances with a second of silence between: two items, each started, stopped,
    committed and completed, the second after the first."""
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await send_in_chunks(ws, two_utterances(jfk_audio), chunk_s=0.1)
        events = await until(ws, COMPLETED)
        events += await until(ws, COMPLETED)
    started = of_type(events, "input_audio_buffer.speech_started")
    stopped = of_type(events, "input_audio_buffer.speech_stopped")
    committed = of_type(events, "input_audio_buffer.committed")
    completed = of_type(events, COMPLETED)
    items = [c["item_id"] for c in committed]
    assert len(set(items)) == 2
    assert [e["item_id"] for e in started] == [e["item_id"] for e in stopped] == items
    assert [c["item_id"] for c in completed] == items  # in order
    assert committed[1]["previous_item_id"] == items[0]
    # JFK speaks from about 0.35 s, the second time 3.5 s later: each start is 300 ms of
    # prefix padding earlier; each stops 500 ms after its speech (cut off at 2.5 s)
    assert started[0]["audio_start_ms"] == pytest.approx(350 - 300, abs=150)
    assert started[1]["audio_start_ms"] == pytest.approx(3850 - 300, abs=150)
    assert stopped[0]["audio_end_ms"] == pytest.approx(2500 + 500, abs=300)
    assert stopped[1]["audio_end_ms"] == pytest.approx(6000 + 500, abs=300)
    for item in items:
        deltas = [e for e in events if e["type"].endswith(".delta") and e["item_id"] == item]
        (done,) = [c for c in completed if c["item_id"] == item]
        assert "".join(d["delta"] for d in deltas) == done["transcript"] != ""


async def test_the_session_reads_on_while_the_detector_catches_up(
    client, backend, jfk_audio, held_detector
) -> None:
    """Server VAD looks at the audio beside the receive path: while the detector's round is
    held, the session still answers events; once it goes on, both turns in what came
    meanwhile are found, each item holding exactly its audio up to its stop."""
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await send_in_chunks(ws, two_utterances(jfk_audio), chunk_s=0.1)
        await ws.send_json({"type": "session.update", "session": {"type": "transcription"}})
        assert (await receive(ws))["type"] == "session.updated"  # the round still held
        held_detector.set()
        events = await until(ws, COMPLETED)
        events += await until(ws, COMPLETED)
    stopped = of_type(events, "input_audio_buffer.speech_stopped")
    committed = of_type(events, "input_audio_buffer.committed")
    completed = of_type(events, COMPLETED)
    assert [e["type"] for e in events if e["type"].startswith("input_audio_buffer.")] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ] * 2
    assert [e["item_id"] for e in stopped] == [e["item_id"] for e in committed]
    assert [c["item_id"] for c in completed] == [e["item_id"] for e in committed]
    assert [e["audio_end_ms"] for e in stopped] == pytest.approx([3000, 6500], abs=300)
    ends_s = [0.0] + [e["audio_end_ms"] / 1000 for e in stopped]
    assert [c["usage"]["seconds"] for c in completed] == pytest.approx(
        [ends_s[1] - ends_s[0], ends_s[2] - ends_s[1]], abs=0.002
    )


async def test_telephone_audio_in_mulaw_is_transcribed(client, backend, jfk_audio) -> None:
    at_8k = soxr.resample(jfk_audio[: 4 * SAMPLE_RATE], SAMPLE_RATE, 8_000)
    # μ-law encode: the nearest of the 256 levels the table decodes to
    mulaw = np.abs(at_8k[:, None] - MULAW[None, :]).argmin(axis=1).astype(np.uint8).tobytes()
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await ws.send_json(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}},
                },
            }
        )
        await receive(ws)
        await ws.send_json(append(mulaw))
        await ws.send_json({"type": "input_audio_buffer.commit"})
        events = await until(ws, COMPLETED)
    assert len(events[-1]["transcript"].split()) >= 4
    assert events[-1]["usage"]["seconds"] == pytest.approx(4.0, abs=0.05)


async def test_a_turn_the_model_fails_on_is_reported_failed(client, backend, jfk_audio) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        backend.failure = AsrFailed("decoding failed: out of memory")
        events = await one_turn(
            ws, jfk_audio[: 3 * SAMPLE_RATE], "conversation.item.input_audio_transcription.failed"
        )
    failed = events[-1]
    assert failed["error"]["code"] == "model_error"
    assert failed["item_id"] == of_type(events, "input_audio_buffer.committed")[0]["item_id"]
    assert "out of memory" not in json.dumps(events)  # internals stay in the log


async def test_shutdown_commits_the_open_turn_completes_it_then_closes_with_1001(
    client, backend, jfk_audio
) -> None:
    """The server stops while the session waits for its client's next event, the turn open:
    the wait ends at once, and the turn is committed and read to its end before the close."""
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        await ws.send_json(append(pcm16(at_24k(jfk_audio))))
        await ws.send_json({"type": "session.update", "session": {"type": "transcription"}})
        assert (await receive(ws))["type"] == "session.updated"  # all of the audio was read
        shutdown = asyncio.create_task(client.server.close())
        events = await until(ws, COMPLETED)
        message = await ws.receive(timeout=5)
        await shutdown
    assert [e["type"] for e in events if not e["type"].endswith(".delta")] == [
        "input_audio_buffer.committed",
        COMPLETED,
    ]
    expected = whole_turn_heard(at_24k(jfk_audio), backend)
    assert events[-1]["transcript"] == expected and len(expected.split()) > 10
    assert (message.type, message.data, message.extra) == (
        WSMsgType.CLOSE,
        1001,
        "server shutting down",
    )


async def test_clear_drops_the_audio_not_yet_committed(client, backend, jfk_audio) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        await ws.send_json(append(pcm16(at_24k(jfk_audio[: 2 * SAMPLE_RATE]))))
        await ws.send_json({"type": "input_audio_buffer.clear"})
        assert (await receive(ws))["type"] == "input_audio_buffer.cleared"
        await ws.send_json({"type": "input_audio_buffer.commit", "event_id": "c1"})
        error = await receive(ws)
    assert error["type"] == "error"
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert error["error"]["event_id"] == "c1"
    assert "buffer only has 0.00ms of audio" in error["error"]["message"]


# --- refused events ------------------------------------------------------------------------

BAD_EVENTS = {
    "not JSON": ("{", "invalid_json", None),
    "not an object": ("[1]", "invalid_event", None),
    "an unknown type": ('{"type": "response.create"}', "invalid_value", "type"),
    "audio not base64": (
        '{"type": "input_audio_buffer.append", "audio": "***"}',
        "invalid_value",
        "audio",
    ),
    "no audio": ('{"type": "input_audio_buffer.append"}', "missing_required_parameter", "audio"),
    "half a sample": (
        json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01").decode()}
        ),
        "invalid_value",
        "audio",
    ),
    "semantic VAD": (
        json.dumps(
            {
                "type": "session.update",
                "session": {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
            }
        ),
        "invalid_value",
        "session.audio.input.turn_detection.type",
    ),
    "an unknown field": (
        json.dumps({"type": "session.update", "session": {"voice": "alloy"}}),
        "unknown_parameter",
        "session.voice",
    ),
    "a conversation session": (
        json.dumps({"type": "session.update", "session": {"type": "realtime"}}),
        "invalid_value",
        "session.type",
    ),
    "a threshold above 1": (
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}
                },
            }
        ),
        "invalid_value",
        "session.audio.input.turn_detection.threshold",
    ),
    "an 8 kHz format at 16 kHz": (
        json.dumps(
            {
                "type": "session.update",
                "session": {"audio": {"input": {"format": {"type": "audio/pcma", "rate": 16000}}}},
            }
        ),
        "invalid_value",
        "session.audio.input.format",
    ),
}


async def test_a_model_out_of_reach_is_said_once_and_the_session_goes_on_when_it_is_back(
    client, backend, jfk_audio
) -> None:
    """Two turns spoken while the model cannot be reached (their steps fail on the beat):
    `model_unavailable` said once, each turn's audio said unheard and its item `failed`;
    the model back, the next turn completes with its words."""
    speech = at_24k(jfk_audio[: int(1.5 * SAMPLE_RATE)])
    failed = "conversation.item.input_audio_transcription.failed"

    async def spoken_turn(last: str) -> list[dict]:
        step = int(0.1 * 24_000)
        for start in range(0, speech.size, step):  # four times real time: steps on the beat
            await ws.send_json(append(pcm16(speech[start : start + step])))
            await asyncio.sleep(0.025)
        await ws.send_json({"type": "input_audio_buffer.commit"})
        return await until(ws, last)

    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        backend.failure = AsrUnavailable("Triton at 127.0.0.1:1 cannot be reached")
        events = await spoken_turn(failed)
        events += await spoken_turn(failed)
        assert len(backend.calls) > 2  # steps too, not only the reads at the commits
        backend.failure = None
        events += await spoken_turn(COMPLETED)
    errors = [e["error"] for e in of_type(events, "error")]
    assert errors[0]["code"] == "model_unavailable"
    assert "resumes when it is back" in errors[0]["message"]
    assert [e["code"] for e in errors[1:]] == ["audio_skipped"] * 2  # one per failed item
    assert all("(model_unavailable)" in e["message"] for e in errors[1:])
    assert [e["error"]["code"] for e in of_type(events, failed)] == ["model_unavailable"] * 2
    (completed,) = of_type(events, COMPLETED)
    assert completed["transcript"].split() != []
    assert completed["usage"]["seconds"] == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("name", BAD_EVENTS)
async def test_a_bad_event_gets_an_error_and_the_session_goes_on(
    client, backend, jfk_audio, name
) -> None:
    data, code, param = BAD_EVENTS[name]
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await ws.send_str(data)
        error = await receive(ws)
        assert error["type"] == "error"
        assert (error["error"]["type"], error["error"]["code"], error["error"]["param"]) == (
            "invalid_request_error",
            code,
            param,
        )
        assert error["error"]["message"]
        # still a session: a turn is transcribed after it
        await manual_commits(ws)
        events = await one_turn(ws, jfk_audio[: 2 * SAMPLE_RATE])
    assert events[-1]["transcript"]


async def test_binary_messages_are_refused_with_a_hint(client) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await ws.send_bytes(b"\x00\x00" * 100)
        error = await receive(ws)
    assert error["error"]["code"] == "invalid_message"
    assert "input_audio_buffer.append" in error["error"]["message"]


async def test_the_format_is_fixed_once_audio_has_come(client, jfk_audio) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await ws.send_json(append(pcm16(at_24k(jfk_audio[:2400]))))
        await ws.send_json(
            {
                "type": "session.update",
                "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}},
            }
        )
        error = await receive(ws)
    assert error["error"]["param"] == "session.audio.input.format"


async def test_realtime_sessions_count_against_the_stream_limits(make_client) -> None:
    client = await make_client(max_streams=1)
    async with client.ws_connect(PATH) as first:
        await opened(first)
        async with client.ws_connect("/stream-audio") as second:
            message = await second.receive(timeout=5)
    assert message.type == WSMsgType.CLOSE and message.data == 1013


async def test_logprobs_when_asked_one_per_word_spelling_the_delta(
    client, backend, jfk_audio
) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await ws.send_json(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"turn_detection": None}},
                    "include": ["item.input_audio_transcription.logprobs"],
                },
            }
        )
        await receive(ws)
        events = await one_turn(ws, jfk_audio[: 4 * SAMPLE_RATE])
    deltas = of_type(events, "conversation.item.input_audio_transcription.delta")
    assert deltas
    for delta in deltas:
        tokens = delta["logprobs"]
        assert "".join(t["token"] for t in tokens) == delta["delta"]
        assert all(bytes(t["bytes"]) == t["token"].encode() for t in tokens)
        # the scripted words' probability is 0.9
        assert all(t["logprob"] == pytest.approx(-0.105361, abs=1e-6) for t in tokens)
    # the words' probabilities are asked for (not each token's log-probability: unused)
    assert backend.calls
    assert not any(call.options.word_times_only or call.options.logprobs for call in backend.calls)


async def test_no_logprobs_unless_asked(client, backend, jfk_audio) -> None:
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        events = await one_turn(ws, jfk_audio[: 4 * SAMPLE_RATE])
    assert not any("logprobs" in e for e in events)
    # the words' times only: their probabilities cost the model a vocabulary product
    assert backend.calls and all(call.options.word_times_only for call in backend.calls)
    assert not any(call.options.logprobs for call in backend.calls)


async def test_a_client_waiting_for_its_transcript_is_not_idle(
    make_client, backend, jfk_audio
) -> None:
    """The idle timeout (1 s here) does not close a session whose committed turn the model is
    still reading: the client is waiting for it."""
    client = await make_client(stream_idle_timeout_s=1)
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        backend.hold()
        await ws.send_json(append(pcm16(at_24k(jfk_audio[: 3 * SAMPLE_RATE]))))
        await ws.send_json({"type": "input_audio_buffer.commit"})
        assert (await receive(ws))["type"] == "input_audio_buffer.committed"
        await asyncio.sleep(2.5)  # the model holds the turn past the idle timeout
        backend.release()
        events = await until(ws, COMPLETED)
        assert events[-1]["transcript"]
        error = await receive(ws, timeout=5)  # then idle: no audio, nothing pending
    assert error["type"] == "error" and "no audio or message for 1 s" in error["error"]["message"]


KEY = "hk-realtime-test-1"


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("", {}, 401),
        ("&token=wrong", {}, 401),
        ("", {"Authorization": f"Bearer {KEY}"}, None),
        (f"&token={KEY}", {}, None),
        ("", {"Authorization": f"Bearer {KEY}", "Origin": "https://elsewhere.example"}, 403),
    ],
    ids=["no key", "a wrong token", "bearer", "token", "a foreign page"],
)
async def test_keys_and_origins_as_for_every_live_stream(
    make_client, query, headers, status
) -> None:
    client = await make_client(api_keys=KEY)
    if status is not None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(PATH + query, headers=headers)
        assert refused.value.status == status
        return
    async with client.ws_connect(PATH + query, headers=headers) as ws:
        assert (await opened(ws))["type"] == "transcription"


async def test_a_model_not_served_is_refused_like_the_http_routes_refuse_it(
    client, backend
) -> None:
    response = await client.get(
        "/v1/realtime?intent=transcription&model=gpt-4o-transcribe",
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "model_not_found"
    async with client.ws_connect(PATH + f"&model={backend.weights}") as ws:
        await opened(ws)
        transcription = {"model": "gpt-4o-transcribe"}
        await ws.send_json(
            {
                "type": "session.update",
                "session": {"audio": {"input": {"transcription": transcription}}},
            }
        )
        error = (await receive(ws))["error"]
        assert (error["code"], error["param"]) == (
            "model_not_found",
            "session.audio.input.transcription.model",
        )
        assert f"This server serves `{backend.weights}` (also as `whisper-1`)" in error["message"]
        transcription["model"] = backend.weights
        await ws.send_json(
            {
                "type": "session.update",
                "session": {"audio": {"input": {"transcription": transcription}}},
            }
        )
        updated = await receive(ws)
    assert updated["session"]["audio"]["input"]["transcription"]["model"] == backend.weights


async def test_turns_committed_faster_than_they_are_read_are_bounded(
    make_client, backend, jfk_audio
) -> None:
    """A client commits twelve 5 s turns while the model holds the first: what waits is held
    to `stream_max_buffer_seconds` (35 s here), the oldest waiting turns losing their audio,
    each said at once (`audio_skipped`); every item still completes, in order, and the turns
    kept are transcribed whole."""
    client = await make_client(stream_max_buffer_seconds=35)
    piece = jfk_audio[: 5 * SAMPLE_RATE]
    async with client.ws_connect(PATH) as ws:
        await opened(ws)
        await manual_commits(ws)
        backend.hold()
        for _ in range(12):
            await ws.send_json(append(pcm16(at_24k(piece))))
            await ws.send_json({"type": "input_audio_buffer.commit"})
        await backend.until_waiting()
        events = [await receive(ws) for _ in range(12)]  # committed, and the errors between
        while len(of_type(events, "input_audio_buffer.committed")) < 12:
            events.append(await receive(ws))
        backend.release()
        while len(of_type(events, COMPLETED)) < 12:
            events.append(await receive(ws))
    items = [e["item_id"] for e in of_type(events, "input_audio_buffer.committed")]
    skipped = [e for e in of_type(events, "error") if e["error"]["code"] == "audio_skipped"]
    # the first is being read; of the eleven waiting (55 s), the four oldest go: 35 s left
    assert len(skipped) == 4
    completed = {e["item_id"]: e["transcript"] for e in of_type(events, COMPLETED)}
    assert list(completed) == items
    assert [bool(completed[item]) for item in items] == [True] + [False] * 4 + [True] * 7
