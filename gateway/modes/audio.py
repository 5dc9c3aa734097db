"""Decode any audio ffmpeg reads into the samples Whisper takes: 16 kHz mono float32.

ffmpeg runs as an asyncio subprocess on the uploaded bytes, written to a private temporary
directory (MP4/M4A files often keep their index at the end, which a pipe cannot seek to).
It may read only that file: local files only (`-protocol_whitelist file`, no URLs), and only
through audio/video container demuxers (`-format_whitelist`), never through a playlist or
concat demuxer that could name other files; text is refused before ffmpeg even starts. It runs
with an empty environment (none of the gateway's secrets), one thread, limits on CPU time,
memory, open files and file writes, and only the first `_STDERR_KEPT_BYTES` of its log kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import ffmpeg
import numpy as np

from gateway.modes.priority import lower_process, lower_this_thread

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # Whisper's input rate
BYTES_PER_SAMPLE = 4  # float32
WINDOW_SECONDS = 30.0  # one Whisper encoder window
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)  # 480 000
_STDERR_DETAIL_LINES = 3
_STDERR_DETAIL_CHARS = 600
# Demuxers of audio (and video-with-audio) containers: no hls, concat, image2, tty, ...; and
# none of the legacy ones nobody records in any more (ape, tta, gsm, voc, RealMedia)
SAFE_DEMUXERS = (
    "wav,w64,rf64,flac,mp3,ogg,matroska,webm,mov,mp4,m4a,3gp,aac,aiff,amr,au,caf,wv,"
    "asf,avi,mpegts,mpeg,flv,ac3,eac3,dts"
)
_STDERR_KEPT_BYTES = 64 * 1024  # enough for the first complaints; a crafted file can say more
# Limits of one ffmpeg process: decoding audio needs little memory and never writes a file
_FFMPEG_MEMORY_BYTES = 1 << 30
_FFMPEG_OPEN_FILES = 64
_FFMPEG_CPU_GRACE_S = 5  # CPU seconds beyond the wall-clock timeout before the kernel stops it


class AudioDecodeError(ValueError):
    """The bytes are not audio ffmpeg can decode (or decoding took too long)."""


class AudioTooLongError(AudioDecodeError):
    """The audio decodes to more than the configured maximum duration."""


class MissingChannelError(AudioDecodeError):
    """The channel asked for is not in the file."""


class NotAudioError(AudioDecodeError):
    """The bytes are a known non-audio format, text, or a file with no audio stream."""


# Leading bytes of common files that are certainly not audio: refused before ffmpeg runs.
_NON_AUDIO_SIGNATURES = {
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a ZIP archive (or office document)",
    b"\x7fELF": "an executable",
    b"MZ": "a Windows executable",
    b"#!": "a script",
    b"#EXTM3U": "a playlist",
}
_NO_AUDIO_STREAM = ("does not contain any stream", "matches no streams")
_NOT_ON_WHITELIST = "Format not on whitelist"  # ffmpeg found a format SAFE_DEMUXERS leaves out
_NO_SUCH_CHANNEL = "not available from input layout"  # channelmap, for a channel not there
# More channels than any layout ffmpeg can mix down (e.g. 32): then every channel is averaged,
# up to the pan filter's 64.
_NO_DOWNMIX = b"Rematrix is needed between"
_AVERAGE_CHANNELS = "pan=mono|c0<" + "+".join(f"c{index}" for index in range(64))
_DURATION = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_ESTIMATED_DURATION = b"Estimating duration from bitrate"
_PROBE_TIMEOUT_S = 10.0
# How far past `max_seconds` ffmpeg writes: enough to tell a file over the limit from one at it
DECODE_OVERRUN_SECONDS = 1.0
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]* @ 0x[0-9a-f]+\] )+")  # "[in#0 @ 0x55d1c0a4] "
# ffmpeg's lines that tell a client nothing: the input's name, the gateway's own output (which
# fails only because the input did), and a count of repeats
_SAYS_NOTHING = ("Error opening input file ", "Error opening output file", "Last message repeated")
# Threads reading decoders' output: more than ever decode at once (uploads take a running slot,
# max_uploads_running, before they decode); each is made only when none is free
_READER_THREADS = 256
_READ_BYTES = 1 << 20


def most_decoded_bytes(max_seconds: float) -> int:
    """The most one decoding with this length limit writes (4 bytes a sample)."""
    return int((max_seconds + DECODE_OVERRUN_SECONDS) * SAMPLE_RATE) * BYTES_PER_SAMPLE


def sniff_non_audio(data: bytes) -> str | None:
    """What the bytes are, if they are clearly not audio (or video with sound)."""
    for signature, description in _NON_AUDIO_SIGNATURES.items():
        if data.startswith(signature):
            return description
    head = data[:1024]
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if sum(char.isprintable() or char.isspace() for char in text) >= 0.95 * len(text):
            return "text"
    return None


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """The static ffmpeg shipped in the imageio-ffmpeg wheel: no system package needed.
    Imported here, on first use, so that live streams (raw PCM, no ffmpeg) run without it."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _source(source_path: Path) -> ffmpeg.nodes.FilterableStream:
    """The upload as ffmpeg may read it: that one local file, through SAFE_DEMUXERS only."""
    return ffmpeg.input(
        str(source_path), protocol_whitelist="file", format_whitelist=SAFE_DEMUXERS, threads=1
    )


def probe_command(source_path: Path) -> list[str]:
    """argv that opens the file as decoding does and decodes nothing: its log says how long
    the container declares the audio to be."""
    stream = _source(source_path).output("-", format="null", t=0)
    return stream.global_args("-nostdin", "-hide_banner").compile(cmd=ffmpeg_executable())


def declared_seconds(log: bytes) -> float | None:
    """The duration in a probe's log, if the container states it (not a guess from the
    bitrate and the file's size, which a broken header makes wrong)."""
    if _ESTIMATED_DURATION in log or (match := _DURATION.search(log)) is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def ffmpeg_command(
    source_path: Path,
    *,
    channel: int | None = None,
    max_seconds: float | None = None,
    average_channels: bool = False,
) -> list[str]:
    """argv that reads one local file and writes raw 16 kHz mono f32le to stdout.

    `channel` picks one input channel (0-based) instead of the default downmix;
    `average_channels` replaces ffmpeg's downmix by the plain mean of all channels.
    `max_seconds` stops decoding just past the limit, so a tiny file that declares hours of
    audio costs no more than the limit to find out.
    """
    source = _source(source_path)
    output_options: dict[str, object] = {
        "format": "f32le",
        "acodec": "pcm_f32le",
        "ac": 1,
        "ar": SAMPLE_RATE,
        "vn": None,  # audio only: ignore video, subtitle and data streams
        "sn": None,
        "dn": None,
    }
    if channel is not None:
        # channelmap, not pan: pan makes silence of a channel the file does not have
        output_options["af"] = f"channelmap=map={channel}:channel_layout=mono"
    elif average_channels:
        output_options["af"] = _AVERAGE_CHANNELS
    if max_seconds is not None:
        output_options["t"] = max_seconds + DECODE_OVERRUN_SECONDS
    stream = source.output("pipe:1", **output_options).global_args(
        "-nostdin", "-hide_banner", "-loglevel", "error", "-filter_threads", "1"
    )
    return stream.compile(cmd=ffmpeg_executable())


async def decode_audio(
    data: bytes,
    *,
    channel: int | None = None,
    max_seconds: float | None = None,
    timeout: float = 60.0,
    watch: OutputWatcher | None = None,
) -> np.ndarray:
    """Decode a whole file held in memory to float32 samples in [-1, 1] at 16 kHz. `watch`
    is told the size of the decoded output as it grows (4 bytes a sample), and may stop the
    decoding by raising."""
    if not data:
        raise AudioDecodeError("the file is empty")
    if (kind := sniff_non_audio(data)) is not None:
        raise NotAudioError(f"the file is {kind}, not audio")
    with tempfile.TemporaryDirectory(prefix="hermes-upload-") as directory:
        source = Path(directory) / "upload"  # no extension: nothing for ffmpeg to guess from
        await asyncio.to_thread(source.write_bytes, data)
        if max_seconds is not None:
            await _refuse_declared_too_long(source, max_seconds, min(timeout, _PROBE_TIMEOUT_S))
        stdout, stderr, returncode = await _run_ffmpeg(
            ffmpeg_command(source, channel=channel, max_seconds=max_seconds), timeout, watch
        )
        if returncode != 0 and channel is None and _NO_DOWNMIX in stderr:
            stdout, stderr, returncode = await _run_ffmpeg(
                ffmpeg_command(source, max_seconds=max_seconds, average_channels=True),
                timeout,
                watch,
            )
    stderr = stderr.replace(str(source).encode(), b"the upload")
    if returncode != 0 and channel is not None and _NO_SUCH_CHANNEL.encode() in stderr:
        raise MissingChannelError(
            f"the file has no channel {channel} (channels are numbered from 0)"
        )
    return _samples(stdout, stderr, returncode, max_seconds)


async def _refuse_declared_too_long(source: Path, max_seconds: float, timeout: float) -> None:
    """AudioTooLongError when the container says its audio is over the limit: refused in
    ~20 ms instead of decoding (and holding) up to the limit first. Files that do not say, or
    say less than they hold, are still stopped by the decoding itself."""
    _, log, _ = await _run_ffmpeg(probe_command(source), timeout)
    declared = declared_seconds(log)
    if declared is not None and declared > max_seconds:
        raise AudioTooLongError(
            f"the audio is longer than the limit of {max_seconds:g} s "
            f"(the file declares {declared:g} s)"
        )


def _limit(pid: int, timeout: float) -> None:
    """The kernel's limits on one ffmpeg: set from outside right after it starts (a
    `preexec_fn` would make every spawn fork the whole gateway, threads and all)."""
    cpu_s = int(timeout) + _FFMPEG_CPU_GRACE_S
    for limit, value in (
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_AS, _FFMPEG_MEMORY_BYTES),
        (resource.RLIMIT_NOFILE, _FFMPEG_OPEN_FILES),
        (resource.RLIMIT_FSIZE, 0),  # output goes to a pipe: no file may be written
    ):
        try:
            resource.prlimit(pid, limit, (value, value))
        except ProcessLookupError:  # already done
            return


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Everything `stream` says, keeping only its first `limit` bytes."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk[: max(0, limit - len(kept))]
    return bytes(kept)


# Told each chunk's size, in the thread that reads the output; raises to stop the decoding
OutputWatcher = Callable[[int], None]


@lru_cache(maxsize=1)
def _output_readers() -> ThreadPoolExecutor:
    """The threads ffmpeg's output is read in, niced as file work: on the event loop, copying
    and paging in every decoded byte took 0.9 s of its CPU for a file that decodes to the
    3 h limit, at the priority of the live streams' frames and beside Triton's cores."""
    return ThreadPoolExecutor(
        _READER_THREADS, thread_name_prefix="decode", initializer=lower_this_thread
    )


def _read_samples(pipe: int, watch: OutputWatcher | None) -> bytearray:
    """Everything written to `pipe` until its end, in one growing buffer (a large bytearray
    grows in place, so the samples are never held twice while they arrive). Closes the pipe:
    a decoder whose reader stopped fails at its next write."""
    output = bytearray()
    try:
        with open(pipe, "rb", buffering=0) as stream:
            while chunk := stream.read(_READ_BYTES):
                if watch is not None:
                    watch(len(chunk))
                output += chunk
    except BaseException:
        # the error keeps this frame alive, in a cycle through the future that carries it,
        # until the cyclic collector comes by (minutes, when little else is allocated): free
        # the samples now, or refused uploads hold memory the decoded-audio budget gave back
        output.clear()
        raise
    return output


async def _communicate(
    process: asyncio.subprocess.Process, samples: Awaitable[bytearray]
) -> tuple[bytearray, bytes]:
    assert process.stderr is not None
    log = asyncio.ensure_future(_read_capped(process.stderr, _STDERR_KEPT_BYTES))
    try:
        output = await samples
        stderr = await log
    finally:
        log.cancel()
    await process.wait()
    return output, stderr


async def _run_ffmpeg(
    command: list[str], timeout: float, watch: OutputWatcher | None = None
) -> tuple[bytearray, bytes, int]:
    output_pipe, ffmpeg_output = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=ffmpeg_output,
            stderr=asyncio.subprocess.PIPE,
            env={"LC_ALL": "C"},  # nothing of the gateway's environment (API keys among it)
        )
    except BaseException:
        os.close(output_pipe)
        raise
    finally:
        os.close(ffmpeg_output)  # ffmpeg holds its own end: the pipe ends when ffmpeg does
    _limit(process.pid, timeout)
    lower_process(process.pid)
    samples = asyncio.wrap_future(_output_readers().submit(_read_samples, output_pipe, watch))
    try:
        stdout, stderr = await asyncio.wait_for(
            _communicate(process, asyncio.shield(samples)), timeout
        )
    except TimeoutError as exc:
        raise AudioDecodeError(f"decoding took longer than {timeout:g} s") from exc
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()  # its log to the end (a full pipe would pause it)
        # the reader ends with the pipe, now that ffmpeg has: nothing it does (telling the
        # watcher) may come after the decoding is over
        await asyncio.wait([samples])
    return stdout, stderr, process.returncode or 0


def _reason(log: str) -> str:
    """ffmpeg's first few distinct complaints (the cause comes first, its consequences after),
    without the addresses of its internal objects, the lines that say nothing to a client
    (`_SAYS_NOTHING`), and lines that end in a cause already given ("Error opening input
    files: Invalid data found when processing input" after "Error opening input: Invalid
    data found when processing input")."""
    lines: list[str] = []
    causes: set[str] = set()
    for line in log.splitlines():
        line = _LOG_PREFIX.sub("", line.strip())
        cause = line.rsplit(": ", 1)[-1]
        if not line or line.startswith(_SAYS_NOTHING) or cause in causes:  # a repeat, too
            continue
        lines.append(line)
        causes.add(cause)
    return "; ".join(lines[:_STDERR_DETAIL_LINES])[:_STDERR_DETAIL_CHARS]


def _samples(
    stdout: bytearray, stderr: bytes, returncode: int, max_seconds: float | None
) -> np.ndarray:
    log = stderr.decode("utf-8", "replace")
    if returncode != 0 and any(marker in log for marker in _NO_AUDIO_STREAM):
        raise NotAudioError("the file has no audio stream")
    if returncode != 0 and _NOT_ON_WHITELIST in log:
        raise NotAudioError(
            "the file is in a format the gateway does not read "
            "(audio and video containers only: no playlists or lists of other files)"
        )
    if returncode != 0:
        raise AudioDecodeError(f"ffmpeg could not decode the audio: {_reason(log) or 'no detail'}")
    samples = np.frombuffer(stdout, np.float32, count=len(stdout) // BYTES_PER_SAMPLE)
    if samples.size == 0:
        reason = _reason(log)
        raise AudioDecodeError(
            "the file contains no audio samples" + (f": {reason}" if reason else "")
        )
    if max_seconds is not None and samples.size > max_seconds * SAMPLE_RATE:
        raise AudioTooLongError(f"the audio is longer than the limit of {max_seconds:g} s")
    return np.clip(samples, -1.0, 1.0, out=samples)  # in place: no second copy
