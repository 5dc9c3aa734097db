"""Overload through the real stack: uploads beyond the waiting room are refused at once, and
a stream that outpaces the model transcribes its newest audio and says what it skipped."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from gateway.server.settings import Settings
from testsupport.http import error_of, form
from testsupport.streams import assert_protocol, pcm16, stream
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration


async def test_uploads_beyond_the_waiting_room_get_503_with_retry_after(
    make_gateway, gateway_settings: Settings, clips
) -> None:
    harvard = clips["OSR_us_000_0034_8k.wav"]
    gateway = await make_gateway(
        replace(gateway_settings, max_uploads_running=1, max_uploads_waiting=1)
    )
    replies = await asyncio.gather(
        *(gateway.post("/v1/audio/transcriptions", data=form(harvard.path)) for _ in range(4))
    )
    served = [reply for reply in replies if reply.status == 200]
    refused = [reply for reply in replies if reply.status != 200]
    assert len(served) == 2 and len(refused) == 2, [reply.status for reply in replies]
    for reply in served:
        assert word_error_rate(harvard.text, (await reply.json())["text"]) == 0.0
    for reply in refused:
        assert "server is busy" in await error_of(reply, 503)
        assert reply.headers["Retry-After"] == "5"
    # the waiting room empties: the next upload is served
    assert (await gateway.post("/transcribe", data=form(clips["jfk.flac"].path))).status == 200


async def test_a_stream_faster_than_the_model_skips_old_audio_and_says_so(gateway, clips) -> None:
    harvard = clips["OSR_us_000_0034_8k.wav"]
    audio = np.concatenate([harvard.audio, harvard.audio])  # 71 s, sent in about 2 s
    run = await stream(gateway, pcm16(audio), bytes_per_second=32000, pace=40.0, linger=8.0)
    assert_protocol(run)
    skipped = run.of_type("skipped")
    assert skipped and all(m["reason"] == "overload" and m["start"] < m["end"] for m in skipped)
    finals = run.of_type("final")
    for gap in skipped:  # nothing is reported as heard inside a stretch said to be skipped
        assert all(
            f["end"] <= gap["start"] + 0.05 or f["start"] >= gap["end"] - 0.05 for f in finals
        )
    # the newest audio was transcribed: the end of the transcript is the end of the clip
    words, reference = run.text.split(), harvard.text.split()
    assert len(words) < 2 * len(reference)
    assert word_error_rate(" ".join(reference[-12:]), " ".join(words[-12:])) <= 0.1, run.text
