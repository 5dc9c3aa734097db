"""ffmpeg decoding to 16 kHz mono float32, run on real files with the real ffmpeg binary."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile

from gateway.modes import audio
from gateway.modes.audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    AudioTooLongError,
    NotAudioError,
    decode_audio,
    ffmpeg_executable,
)
from testsupport.clips import DATA_DIR, run_ffmpeg


def encode(path: Path, suffix: str, *args: str, inputs: tuple[str, ...] = ()) -> bytes:
    """Re-encode a test clip with ffmpeg into another container/codec (via a real file, so
    MP4 gets its index at the end, as most recorders write it)."""
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / f"clip.{suffix}"
        run_ffmpeg(*inputs, "-i", str(path), *args, str(target))
        return target.read_bytes()


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("jfk.flac", 11.0), ("OSR_us_000_0034_8k.wav", 35.5), ("hotwords.mp3", 4.0)],
)
async def test_decodes_to_16k_mono_float32(name: str, seconds: float) -> None:
    samples = await decode_audio((DATA_DIR / name).read_bytes())
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / SAMPLE_RATE - seconds) < 0.15
    assert 0.05 < float(np.max(np.abs(samples))) <= 1.0


@pytest.mark.parametrize(
    ("container", "args"),
    [
        ("ogg", ["-c:a", "libopus"]),
        ("webm", ["-c:a", "libopus"]),
        ("m4a", ["-c:a", "aac"]),
        ("mp3", []),
        ("aac", []),
    ],
)
async def test_decodes_compressed_containers(container: str, args: list[str]) -> None:
    data = encode(DATA_DIR / "jfk.flac", container, *args)
    samples = await decode_audio(data)
    assert abs(samples.size / SAMPLE_RATE - 11.0) < 0.2


async def test_picks_one_channel_instead_of_the_downmix() -> None:
    data = (DATA_DIR / "stereo_diarization.wav").read_bytes()
    stereo, _ = soundfile.read(io.BytesIO(data), dtype="float32")
    left = await decode_audio(data, channel=0)
    right = await decode_audio(data, channel=1)
    mixed = await decode_audio(data)
    assert np.allclose(left, stereo[:, 0], atol=1e-3)
    assert np.allclose(right, stereo[:, 1], atol=1e-3)
    # the downmix is ffmpeg's (as openai-whisper's own loader): both channels, equal weight
    assert np.corrcoef(mixed, stereo.mean(axis=1))[0, 1] > 0.999


@pytest.mark.parametrize("data", [b"", b"this is not audio at all" * 50, bytes(range(256)) * 40])
async def test_rejects_what_is_not_audio(data: bytes) -> None:
    with pytest.raises(AudioDecodeError):
        await decode_audio(data)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        # ffmpeg also says "Error opening input file /tmp/...", then the same cause again
        ("cut-in-header.flac", "Error opening input: Invalid data found when processing input"),
        # ... and "Error opening output file pipe:1.; Error opening output files: ..."
        ("fmt-unknown-codec.wav", "Decoding requested, but no decoder found for: none"),
    ],
)
async def test_ffmpegs_complaint_is_its_cause_once_without_file_names(name: str, reason: str):
    with pytest.raises(AudioDecodeError) as raised:
        await decode_audio((DATA_DIR / "hostile" / name).read_bytes())
    assert str(raised.value) == f"ffmpeg could not decode the audio: {reason}"


async def test_decodes_the_sound_of_a_video() -> None:
    data = encode(
        DATA_DIR / "jfk.flac",
        "mp4",
        "-shortest",
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        inputs=("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10"),
    )
    assert abs((await decode_audio(data)).size / SAMPLE_RATE - 11.0) < 0.2


async def test_a_video_without_sound_is_not_audio() -> None:
    data = encode(
        DATA_DIR / "jfk.flac",
        "mp4",
        "-t",
        "2",
        "-an",
        "-c:v",
        "mpeg4",
        inputs=("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10"),
    )
    with pytest.raises(NotAudioError, match="no audio stream"):
        await decode_audio(data)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.7\n...", "PDF"),
        (b"\x7fELF\x02\x01", "executable"),
        (b"hello, plain text\n" * 10, "text"),
    ],
)
async def test_known_non_audio_is_refused_before_ffmpeg(data: bytes, kind: str) -> None:
    with pytest.raises(NotAudioError, match=kind):
        await decode_audio(data)


async def test_stops_at_the_duration_limit() -> None:
    data = (DATA_DIR / "OSR_us_000_0034_8k.wav").read_bytes()
    with pytest.raises(AudioTooLongError, match="longer than the limit of 10 s"):
        await decode_audio(data, max_seconds=10)
    assert (await decode_audio(data, max_seconds=40)).size > 35 * SAMPLE_RATE


async def test_a_file_that_declares_too_long_is_refused_without_decoding() -> None:
    """16 KB of FLAC whose header says 10 hours: refused on what it declares, before a
    sample is decoded. The same file with its length erased is decoded up to the limit."""
    hostile = DATA_DIR / "hostile"
    seen: list[int] = []
    with pytest.raises(AudioTooLongError, match=r"limit of 600 s \(the file declares 36000 s\)"):
        await decode_audio(
            (hostile / "decodes-to-hours.flac").read_bytes(), max_seconds=600, watch=seen.append
        )
    assert seen == []
    with pytest.raises(AudioTooLongError, match="longer than the limit of 600 s$"):
        await decode_audio(
            (hostile / "decodes-to-hours-undeclared.flac").read_bytes(),
            max_seconds=600,
            watch=seen.append,
        )
    assert sum(seen) >= 600 * SAMPLE_RATE * 4


def test_a_duration_guessed_from_the_bitrate_is_not_taken_as_declared() -> None:
    declared = b"  Duration: 10:00:00.50, start: 0.000000, bitrate: 0 kb/s"
    assert audio.declared_seconds(declared) == 36000.5
    guessed = b"Estimating duration from bitrate, this may be inaccurate\n" + declared
    assert audio.declared_seconds(guessed) is None
    assert audio.declared_seconds(b"  Duration: N/A, start: 0.000000, bitrate: N/A") is None


async def test_a_playlist_cannot_make_ffmpeg_read_another_file(tmp_path: Path) -> None:
    canary = tmp_path / "canary.wav"
    soundfile.write(canary, np.full(SAMPLE_RATE, 0.5, np.float32), SAMPLE_RATE)
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nfile://{canary}\n#EXT-X-ENDLIST\n"
    concat = f"ffconcat version 1.0\nfile '{canary}'\n"
    # a NUL byte makes them look binary, so they get past the text check to ffmpeg itself
    for data in (playlist.encode() + b"\0", concat.encode() + b"\0"):
        with pytest.raises(AudioDecodeError):
            await decode_audio(data)


@pytest.mark.parametrize(("container", "args"), [("voc", []), ("rm", ["-c:a", "ac3"])])
async def test_legacy_containers_are_not_read(container: str, args: list[str]) -> None:
    data = encode(DATA_DIR / "jfk.flac", container, *args)
    with pytest.raises(NotAudioError, match="in a format the gateway does not read"):
        await decode_audio(data)


CHILD_REPORT = """
import json, os, resource, sys, time
time.sleep(0.3)  # the limits are set from outside just after the start
sys.stderr.write("x" * 1_000_000)
print(json.dumps({
    "environment": dict(os.environ),
    "limits": {name: resource.getrlimit(getattr(resource, name))[0]
               for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_FSIZE")},
}))
"""


async def test_ffmpeg_runs_without_the_gateways_environment_and_within_limits(monkeypatch):
    """What any child `_run_ffmpeg` starts gets: no inherited variables (API keys among them),
    kernel limits, and only the start of a flood on stderr kept."""
    monkeypatch.setenv("HERMES_API_KEYS", "secret-key")
    stdout, stderr, returncode = await audio._run_ffmpeg([sys.executable, "-c", CHILD_REPORT], 7)
    report = json.loads(stdout)
    assert returncode == 0 and "HERMES_API_KEYS" not in report["environment"]
    assert report["environment"].keys() <= {"LC_ALL", "LC_CTYPE"}
    assert report["limits"] == {
        "RLIMIT_CPU": 12,
        "RLIMIT_AS": 1 << 30,
        "RLIMIT_NOFILE": 64,
        "RLIMIT_FSIZE": 0,
    }
    assert stderr == b"x" * 65536


def ten_minutes_of_quiet(tmp_path: Path) -> bytes:
    """A small FLAC that decodes to 600 s (38 MB of float32 samples)."""
    path = tmp_path / "quiet.flac"
    subprocess.run(
        [ffmpeg_executable(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "anoisesrc=d=600:a=0.001:r=16000", "-ac", "1", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


async def test_decoding_holds_the_samples_once(tmp_path: Path) -> None:
    """The decoder's peak is the samples and a little, not the two or three copies that
    joining, slicing and clipping used to make."""
    data = ten_minutes_of_quiet(tmp_path)
    tracemalloc.start()
    try:
        samples = await decode_audio(data, timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert samples.nbytes == 600 * SAMPLE_RATE * 4
    assert peak <= 1.25 * samples.nbytes, (peak / 2**20, samples.nbytes / 2**20)


async def test_the_watcher_sees_the_output_grow_and_can_stop_it(tmp_path: Path) -> None:
    seen: list[int] = []

    def watch(size: int) -> None:
        seen.append(size)
        if sum(seen) > 2**20:
            raise RuntimeError("over budget")

    with pytest.raises(RuntimeError, match="over budget"):
        await decode_audio(ten_minutes_of_quiet(tmp_path), timeout=60, watch=watch)
    assert 2**20 < sum(seen) <= 2 * 2**20


async def test_decodings_stopped_by_a_shared_budget_end_with_ffmpeg_still_writing() -> None:
    """Four decodings of hours at once against one budget (as uploads share
    max_decoded_audio_mb): those stopped while ffmpeg still has hours to write must end at
    once. A pipe nobody reads any more fills and pauses, and asyncio's `wait()` returns only
    once the pipes are closed: it used to wait forever, and so did the upload, holding its
    share of the budget."""
    hours = (DATA_DIR / "hostile" / "decodes-to-hours-undeclared.flac").read_bytes()
    held = 0

    def watch(size: int) -> None:
        nonlocal held
        if held + size > 768 << 20:
            raise RuntimeError("over budget")
        held += size

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(decode_audio(hours, max_seconds=3 * 3600, timeout=60, watch=watch) for _ in range(4)),
            return_exceptions=True,
        ),
        60,
    )
    assert sum(isinstance(o, RuntimeError) for o in outcomes) >= 3, outcomes


async def test_the_samples_of_a_stopped_decoding_are_freed_at_once() -> None:
    """The error that stops a decoding keeps its frames alive (in a cycle through the task
    that ran them) until the cyclic collector comes by, minutes later when little else is
    allocated: the samples read so far must not wait for it (four over-long uploads refused
    at once left the gateway hundreds of MB above its decoded-audio budget)."""
    hours = (DATA_DIR / "hostile" / "decodes-to-hours-undeclared.flac").read_bytes()

    def watch(size: int, seen: list[int] = [0]) -> None:  # noqa: B006 (a counter of its own)
        seen[0] += size
        if seen[0] > 64 << 20:
            raise RuntimeError("over budget")

    gc.disable()
    tracemalloc.start()
    try:
        with pytest.raises(RuntimeError, match="over budget"):
            await decode_audio(hours, max_seconds=3600, timeout=60, watch=watch)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held < 8 << 20, held >> 20
