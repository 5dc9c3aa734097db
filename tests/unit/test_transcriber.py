"""Pure parts of the model's batch decoder: request validation, the fallback's temperatures
and segment splitting."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from whisper.tokenizer import get_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from transcriber import (
    InvalidRequest,
    encoder_frames,
    make_request,
    parse_draft,
    peak_frame_dbfs,
)
from whisper_adaptations import join_segments, split_segments, temperature_schedule

TOKENIZER = get_tokenizer(multilingual=False)
SECOND = np.zeros(16_000, np.float32)


def timestamp(seconds: float) -> int:
    return TOKENIZER.timestamp_begin + round(seconds / 0.02)


def words(text: str) -> list[int]:
    return TOKENIZER.encode(text)


def test_splits_at_timestamp_pairs() -> None:
    tokens = [
        timestamp(0),
        *words(" Hello there."),
        timestamp(1.5),
        timestamp(1.5),
        *words(" General Kenobi."),
        timestamp(3.0),
    ]
    segments = split_segments(tokens, TOKENIZER, duration=4.0)
    assert [(s.start, s.end, TOKENIZER.decode(s.tokens), s.complete) for s in segments] == [
        (0.0, 1.5, " Hello there.", True),
        (1.5, 3.0, " General Kenobi.", True),
    ]


def test_text_after_the_last_timestamp_ends_with_the_audio_incomplete() -> None:
    tokens = [timestamp(0), *words(" One."), timestamp(2.0), timestamp(2.0), *words(" Two and")]
    segments = split_segments(tokens, TOKENIZER, duration=2.7)
    assert [(s.start, s.end, s.complete) for s in segments] == [(0.0, 2.0, True), (2.0, 2.7, False)]


def test_timestamps_beyond_the_audio_are_clamped() -> None:
    tokens = [timestamp(0.5), *words(" Hi."), timestamp(9.0)]
    assert [(s.start, s.end) for s in split_segments(tokens, TOKENIZER, duration=1.0)] == [
        (0.5, 1.0)
    ]


def test_segments_join_into_the_tokens_they_were_split_from() -> None:
    """A draft (DRAFT) is rebuilt from the segments of an earlier decode, as SEGMENTS gives
    them: closing timestamps where the decode wrote them, none after an unfinished one."""
    tokens = [
        timestamp(0.0),
        *words(" One."),
        timestamp(1.24),
        timestamp(1.24),
        *words(" Two and"),
    ]
    segments = split_segments(tokens, TOKENIZER, duration=2.7)
    assert join_segments(segments, TOKENIZER) == tokens
    as_json = json.dumps(
        [
            {"start": s.start, "end": s.end, "tokens": s.tokens, "complete": s.complete}
            for s in segments
        ]
    )
    assert join_segments(parse_draft(as_json, TOKENIZER.eot), TOKENIZER) == tokens


def test_a_draft_reads_the_decodes_own_times_first() -> None:
    (segment,) = parse_draft(
        '[{"start": 0.3, "end": 1.1, "timestamps": [0.0, 1.24], "tokens": [1, 2]}]',
        TOKENIZER.eot,
    )
    assert (segment.start, segment.end, segment.complete) == (0.0, 1.24, True)


def test_no_tokens_no_segments() -> None:
    assert split_segments([timestamp(0.0)], TOKENIZER, duration=1.0) == []


@pytest.mark.parametrize(
    ("first", "temperatures"),
    [
        (0.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),  # openai-whisper's transcribe() schedule
        (0.5, [0.5, 0.7, 0.9]),
        (0.9, [0.9]),
        (1.0, [1.0]),
    ],
)
def test_the_fallback_starts_at_the_requested_temperature(first, temperatures) -> None:
    assert temperature_schedule(first, 0.2) == pytest.approx(temperatures)


def test_valid_request_is_normalised() -> None:
    request = make_request(
        SECOND,
        multilingual=True,
        language="English",
        task=None,
        prompt="  ComfyUI ",
        temperature=None,
    )
    assert (request.language, request.task, request.prompt, request.temperature) == (
        "en",
        "transcribe",
        "ComfyUI",
        0.0,
    )
    assert make_request(SECOND, multilingual=False).language == "en"
    assert make_request(SECOND, multilingual=True, language="").language is None


@pytest.mark.parametrize(
    ("audio", "options", "message"),
    [
        (np.zeros(0, np.float32), {}, "AUDIO is empty"),
        (np.zeros(480_001, np.float32), {}, "at most 480000"),
        (np.array([np.inf], np.float32), {}, "NaN or infinite"),
        (np.full(10, 3.0, np.float32), {}, "must lie in [-1, 1]"),
        (np.zeros((2, 10), np.float32), {}, "one channel"),
        (SECOND, {"task": "summarise"}, "TASK must be one of"),
        (SECOND, {"temperature": -0.1}, "TEMPERATURE must be between 0 and 1"),
        (SECOND, {"temperature": float("nan")}, "TEMPERATURE must be between 0 and 1"),
        (SECOND, {"language": "de"}, "English-only"),
        (SECOND, {"task": "translate"}, "needs a multilingual model"),
    ],
)
def test_invalid_requests_say_what_is_wrong(audio, options, message) -> None:
    with pytest.raises(InvalidRequest) as caught:
        make_request(audio, multilingual=False, **options)
    assert message in str(caught.value)


@pytest.mark.parametrize("switch", ["low_latency", "short_context"])
@pytest.mark.parametrize(
    ("seconds", "short", "language", "frames"),
    [
        (4.0, False, "en", 3000),  # file windows: always a full 30 s window
        (0.5, True, "en", 1000),  # at least 5 s of padding, in steps of 5 s
        (5.0, True, "en", 1000),
        (5.01, True, "en", 1500),
        (14.9, True, "en", 2000),
        (20.01, True, "en", 3000),
        (24.0, True, "en", 3000),  # never more than a window
        (30.0, True, "en", 3000),
        (4.0, True, None, 3000),  # language detection needs the full window
    ],
)
def test_encoder_context(switch, seconds, short, language, frames) -> None:
    """Low-latency requests (stream steps) and short-context ones (a stream's end read)."""
    request = make_request(
        np.zeros(int(seconds * 16_000), np.float32),
        multilingual=True,
        language=language,
        **{switch: short},
    )
    assert encoder_frames(request) == frames
    assert encoder_frames(request, short_context=False) == 3000  # the choice on a GPU


def test_peak_frame_level_in_dbfs() -> None:
    assert peak_frame_dbfs(np.zeros(16_000, np.float32)) == pytest.approx(-200.0)
    assert peak_frame_dbfs(np.full(16_000, 0.1, np.float32)) == pytest.approx(-20.0)
    quiet_then_loud = np.concatenate([np.zeros(8_000), np.full(400, 1.0)]).astype(np.float32)
    assert peak_frame_dbfs(quiet_then_loud) == pytest.approx(0.0)
    assert peak_frame_dbfs(np.full(100, 0.5, np.float32)) == pytest.approx(-6.02, abs=0.01)


def test_the_heap_trimmer_returns_freed_memory_at_most_once_per_interval_while_busy() -> None:
    from heap import HeapTrimmer

    trimmer = HeapTrimmer(min_interval_s=3600.0, idle_s=3600.0)
    assert trimmer._trim is not None  # glibc here
    block = np.ones(64 << 20, np.uint8)  # 64 MiB, given back to malloc when freed
    with trimmer.working():
        del block
    with trimmer.working():
        pass
    assert trimmer.trims == 1  # the first batch trimmed; the second was within the interval


def test_the_heap_trimmer_trims_once_when_idle_and_never_during_a_batch() -> None:
    from heap import HeapTrimmer

    calls: list[float] = []
    trimmer = HeapTrimmer(min_interval_s=3600.0, idle_s=0.05, trim=lambda _: calls.append(1) or 1)
    with trimmer.working():
        pass
    assert len(calls) == 1  # the first batch: no trim before it
    with trimmer.working():
        time.sleep(0.3)  # long past idle_s, but a batch runs: no trim
        assert len(calls) == 1
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == 2  # idle after the batch: one trim
    time.sleep(0.3)
    assert len(calls) == 2  # and only one, until the next batch


# Run in a child process: glibc's settings would otherwise hold for the rest of the suite.
HEAP_PROBE = """
import ctypes, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from heap import keep_freed_memory

def resident_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

kept = keep_freed_memory() if sys.argv[2] == "keep" else None
before = resident_mib()
block = np.ones(64 << 20, np.uint8)  # 64 MiB, written
del block
after_free = resident_mib() - before
ctypes.CDLL("libc.so.6").malloc_trim(0)
print(kept, round(after_free), round(resident_mib() - before))
"""


@pytest.mark.parametrize(
    ("mode", "expected_kept", "held_after_free"),
    [("keep", "True", True), ("default", "None", False)],
)
def test_freed_memory_stays_in_the_heap_until_a_trim_gives_it_back(
    mode: str, expected_kept: str, held_after_free: bool
) -> None:
    """With `keep_freed_memory` a freed 64 MiB block stays resident for the next tensors (no
    page faults to map it again) until `malloc_trim`; by default glibc unmaps it at once."""
    import subprocess

    model_dir = Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"
    probe = subprocess.run(
        [sys.executable, "-c", HEAP_PROBE, str(model_dir), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    kept, after_free, after_trim = probe.stdout.split()
    assert kept == expected_kept
    assert (int(after_free) >= 60) is held_after_free, probe.stdout
    assert int(after_trim) < 8, probe.stdout  # the trim gives it back either way


def test_keeping_freed_memory_sets_both_of_glibcs_settings() -> None:
    from heap import M_MMAP_MAX, M_TRIM_THRESHOLD, keep_freed_memory

    calls: list[tuple[int, int]] = []
    assert keep_freed_memory(lambda option, value: calls.append((option, value)) or 1)
    assert calls == [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)]
    assert not keep_freed_memory(lambda option, value: 0)  # glibc refused a setting
