"""Decode any audio ffmpeg reads into the samples Whisper takes: 16 kHz mono float32.

ffmpeg runs as an asyncio subprocess on the uploaded bytes, piped in: it may open nothing
but its pipes (`-protocol_whitelist pipe`), so a playlist, concat list or metadata that
names another file or a URL cannot make it read anything else.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

import ffmpeg
import imageio_ffmpeg
import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # Whisper's input rate
BYTES_PER_SAMPLE = 4  # float32
WINDOW_SECONDS = 30.0  # one Whisper encoder window
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)  # 480 000
_STDERR_TAIL_CHARS = 600


class AudioDecodeError(ValueError):
    """The bytes are not audio ffmpeg can decode (or decoding took too long)."""


class AudioTooLongError(AudioDecodeError):
    """The audio decodes to more than the configured maximum duration."""


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """The static ffmpeg shipped in the imageio-ffmpeg wheel: no system package needed."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_command(*, channel: int | None = None, max_seconds: float | None = None) -> list[str]:
    """argv that reads a file from stdin and writes raw 16 kHz mono f32le to stdout.

    `channel` picks one input channel (0-based) instead of the default downmix.
    `max_seconds` stops decoding just past the limit, so a tiny file that declares hours of
    audio costs no more than the limit to find out.
    """
    source = ffmpeg.input("pipe:0", protocol_whitelist="pipe")
    output_options: dict[str, object] = {
        "format": "f32le",
        "acodec": "pcm_f32le",
        "ac": 1,
        "ar": SAMPLE_RATE,
    }
    if channel is not None:
        output_options["af"] = f"pan=mono|c0=c{channel}"
    if max_seconds is not None:
        output_options["t"] = max_seconds + 1.0
    stream = source.output("pipe:1", **output_options).global_args(
        "-nostdin", "-hide_banner", "-loglevel", "error", "-vn", "-sn", "-dn"
    )
    return stream.compile(cmd=ffmpeg_executable())


async def decode_audio(
    data: bytes,
    *,
    channel: int | None = None,
    max_seconds: float | None = None,
    timeout: float = 60.0,
) -> np.ndarray:
    """Decode a whole file held in memory to float32 samples in [-1, 1] at 16 kHz."""
    if not data:
        raise AudioDecodeError("the file is empty")
    command = ffmpeg_command(channel=channel, max_seconds=max_seconds)
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(data), timeout)
    except asyncio.TimeoutError as exc:
        raise AudioDecodeError(f"decoding took longer than {timeout:g} s") from exc
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    message = stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL_CHARS:]
    if process.returncode != 0:
        raise AudioDecodeError(f"ffmpeg could not decode the audio: {message or 'no detail'}")
    samples = np.frombuffer(stdout[: len(stdout) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE], np.float32)
    if samples.size == 0:
        raise AudioDecodeError(f"the file contains no audio samples {message}".strip())
    if max_seconds is not None and samples.size > max_seconds * SAMPLE_RATE:
        raise AudioTooLongError(
            f"the audio is longer than the limit of {max_seconds:g} s"
        )
    return np.clip(samples, -1.0, 1.0)
