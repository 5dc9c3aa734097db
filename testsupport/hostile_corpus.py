"""Write the hostile-input corpus: small files that are empty, broken, not audio, absurd, or
built to make ffmpeg read something other than the upload.

    .venv/bin/python -m testsupport.hostile_corpus   # rewrites tests/data/hostile

Deterministic for a given ffmpeg build (the one `gateway.modes.audio.ffmpeg_executable()` returns):
speech comes from `tests/data/jfk.flac`, everything else from fixed numbers, and the muxers
run with `bitexact` so no version strings or dates end up in the files.

Files ending in `.tmpl` point at a canary that only exists while a test runs. They hold the
tokens `@CANARY_FILE@` (an absolute path) and `@CANARY_URL@` (an http URL); `render` fills
them in. In binary templates the token is padded with `_` to `FIELD_BYTES` bytes, so the value
(NUL-padded to the same length) fits without moving any offset.
"""

from __future__ import annotations

import io
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.modes.audio import ffmpeg_executable
from testsupport.clips import DATA_DIR

HERE = DATA_DIR / "hostile"  # where the corpus is written
JFK = DATA_DIR / "jfk.flac"
CANARY_FILE = "@CANARY_FILE@"
CANARY_URL = "@CANARY_URL@"
FIELD_BYTES = 256
JFK_OPENING_SECONDS = 4.8  # "And so my fellow Americans, ask not", then a pause
JFK_CUT_SECONDS = 7.8  # in the pause after "... what your country can do for you"
BITEXACT = (
    "-fflags",
    "+bitexact",
    "-flags:a",
    "+bitexact",
    "-flags:v",
    "+bitexact",
    "-map_metadata",
    "-1",
    "-map_chapters",
    "-1",
)


def render(template: bytes, canary_file: str, canary_url: str) -> bytes:
    """A template with the canary's path and URL filled in."""
    for token, value in ((CANARY_FILE, canary_file), (CANARY_URL, canary_url)):
        if len(value) > FIELD_BYTES:
            raise ValueError(f"{value!r} is longer than {FIELD_BYTES} bytes")
        padded = token.ljust(FIELD_BYTES, "_").encode()
        template = template.replace(padded, value.encode().ljust(FIELD_BYTES, b"\0"))
        template = template.replace(token.encode(), value.encode())
    return template


def ffmpeg(suffix: str, *args: str) -> bytes:
    """Run ffmpeg with `args` (inputs and options) into a file of type `suffix`; its bytes."""
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / f"out{suffix}"
        subprocess.run(
            [ffmpeg_executable(), "-nostdin", "-loglevel", "error", *args, *BITEXACT, str(target)],
            check=True,
        )
        return target.read_bytes()


def jfk(seconds: float, rate: int = 16_000) -> np.ndarray:
    """The opening `seconds` of jfk.flac as mono PCM16 at `rate`."""
    decoded = subprocess.run(
        [
            ffmpeg_executable(),
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(JFK),
            "-t",
            str(seconds),
            "-ac",
            "1",
            "-ar",
            str(rate),
            "-f",
            "s16le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(decoded, "<i2")


def quiet_tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A 100 Hz tone at -60 dBFS (below the model's silence gate), PCM16, interleaved."""
    t = np.arange(int(seconds * rate)) / rate
    mono = np.round(np.sin(2 * np.pi * 100 * t) * 32.0).astype("<i2")
    return np.repeat(mono, channels)


def wav(
    frames: bytes,
    rate: int,
    channels: int = 1,
    bits: int = 16,
    *,
    codec: int = 1,
    riff_size: int | None = None,
    data_size: int | None = None,
) -> bytes:
    """A canonical 44-byte-header WAV whose every header field can be made to lie."""
    block_align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH",
        codec,
        channels,
        rate,
        rate * block_align & 0xFFFFFFFF,
        block_align & 0xFFFF,
        bits,
    )
    data_size = len(frames) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", data_size) + frames
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def jfk_mp3(seconds: float) -> bytes:
    return ffmpeg(
        ".mp3",
        "-i",
        str(JFK),
        "-t",
        str(seconds),
        "-ac",
        "1",
        "-ar",
        "16000",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "32k",
    )


# --- truncated -----------------------------------------------------------------------------


def mpeg2_layer3_frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each frame of an MPEG-2 layer III stream (as `jfk_mp3` writes)."""
    kbps = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
    rates = (22_050, 24_000, 16_000)
    frames, offset = [], data.index(b"\xff\xf3")  # after the ID3 tag
    while offset + 4 <= len(data) and data[offset] == 0xFF and data[offset + 1] == 0xF3:
        header = data[offset + 2]
        length = 72_000 * kbps[header >> 4] // rates[(header >> 2) & 3] + ((header >> 1) & 1)
        frames.append((offset, length))
        offset += length
    return frames


def cut_mid_frame() -> bytes:
    """JFK as 32 kb/s MP3, cut half-way through the frame that starts at 7.8 s (576 samples
    a frame at 16 kHz; the first frame is the encoder's Xing header, with no audio)."""
    whole = jfk_mp3(11.0)
    offset, length = mpeg2_layer3_frames(whole)[1 + round(JFK_CUT_SECONDS * 16_000 / 576)]
    return whole[: offset + length // 2]


def flac_cut_in_header() -> bytes:
    """The first 30 bytes of a FLAC file: the magic and half of STREAMINFO."""
    return ffmpeg(".flac", "-i", str(JFK), "-t", "1", "-ac", "1", "-ar", "16000")[:30]


# --- corrupt headers -----------------------------------------------------------------------


def flac_streaminfo_zeroed() -> bytes:
    """A FLAC file whose STREAMINFO block (rate, channels, bits, block sizes) is all zeros."""
    data = bytearray(ffmpeg(".flac", "-i", str(JFK), "-t", "0.5", "-ac", "1", "-ar", "16000"))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    data[8 : 8 + 34] = bytes(34)
    return bytes(data)


def mp3_without_frame_sync() -> bytes:
    """An MP3 whose every frame header has lost its sync word: no frame can be found."""
    data = bytearray(jfk_mp3(JFK_OPENING_SECONDS))
    for offset in range(len(data) - 1):
        if data[offset] == 0xFF and data[offset + 1] & 0xE0 == 0xE0:
            data[offset] = 0x00
    return bytes(data)


def mp3_huge_id3() -> bytes:
    """An ID3v2 header that says the tag is 256 MB long, in front of a real MP3 stream."""
    size = bytes([0x7F, 0x7F, 0x7F, 0x7F])  # syncsafe: 2**28 - 1 bytes
    return b"ID3\x04\x00\x00" + size + jfk_mp3(JFK_OPENING_SECONDS)


# --- not audio -----------------------------------------------------------------------------


def pdf() -> bytes:
    """A one-page PDF that says "hello", with a correct cross-reference table."""
    stream = b"BT /F1 24 Tf 72 720 Td (hello) Tj ET"
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        page,
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def elf() -> bytes:
    """A complete x86-64 Linux executable (129 bytes) that exits with status 0."""
    base, code = (
        0x400000,
        b"\xb8\x3c\x00\x00\x00\x31\xff\x0f\x05",
    )  # mov eax, 60; xor edi, edi; syscall
    size = 64 + 56 + len(code)
    header = (
        b"\x7fELF\x02\x01\x01"
        + bytes(9)
        + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + 120, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    )
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + code


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("notes.txt", date_time=(1980, 1, 1, 0, 0, 0)), "hello\n")
    return buffer.getvalue()


def random_bytes() -> bytes:
    return np.random.default_rng(8).integers(0, 256, 4096, dtype=np.uint8).tobytes()


def test_picture(suffix: str) -> bytes:
    return ffmpeg(suffix, "-f", "lavfi", "-i", "testsrc=size=32x32:rate=1", "-frames:v", "1")


# --- absurd but well-formed ----------------------------------------------------------------


def hours_of_silence() -> bytes:
    """Ten hours of digital silence at 1 kHz in 65535-sample FLAC frames: about 16 KB."""
    return ffmpeg(
        ".flac",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=1000:cl=mono",
        "-t",
        "36000",
        "-c:a",
        "flac",
        "-sample_fmt",
        "s16",
        "-frame_size",
        "65535",
    )


def hours_of_silence_undeclared() -> bytes:
    """The same ten hours, their length erased from STREAMINFO ("unknown", as the FLAC format
    allows): only decoding finds out how long they are."""
    data = bytearray(hours_of_silence())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    fields = int.from_bytes(data[18:26], "big")  # rate, channels, bits, then 36 bits of length
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
    return bytes(data)


def tone_flac(rate: int, seconds: float) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "tone.wav"
        source.write_bytes(wav(quiet_tone(seconds, rate).tobytes(), rate))
        return ffmpeg(".flac", "-i", str(source), "-c:a", "flac")


def speech_in_channel_0_of_64() -> bytes:
    """64 channels of Opus (no channel layout), JFK's opening in channel 0, silence elsewhere."""
    route = "|".join(["c0=0.5*c0+0.5*c1"] + [f"c{channel}=0*c0" for channel in range(1, 64)])
    return ffmpeg(
        ".opus",
        "-i",
        str(JFK),
        "-t",
        str(JFK_OPENING_SECONDS),
        "-af",
        f"pan=64C|{route}",
        "-c:a",
        "libopus",
        "-mapping_family",
        "255",
        "-b:a",
        "2000k",
    )


def video_without_sound() -> bytes:
    return ffmpeg(
        ".mp4", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-t", "1", "-c:v", "mpeg4", "-an"
    )


# --- files that point elsewhere ------------------------------------------------------------

PLAYLIST = f"""#EXTM3U
#EXT-X-TARGETDURATION:36
#EXTINF:36.0,
file://{CANARY_FILE}
#EXTINF:36.0,
{CANARY_URL}
#EXTINF:36.0,
{CANARY_FILE}
#EXTINF:36.0,
concat:{CANARY_FILE}|{CANARY_FILE}
#EXTINF:36.0,
subfile,,start,0,end,0,,:{CANARY_FILE}
#EXT-X-ENDLIST
"""

CONCAT_LIST = f"""ffconcat version 1.0
file '{CANARY_FILE}'
file 'file:{CANARY_FILE}'
file '{CANARY_URL}'
"""

SDP = f"""v=0
o=- 0 0 IN IP4 127.0.0.1
s=canary
c=IN IP4 127.0.0.1
t=0 0
a=x-canary:{CANARY_URL}
m=audio 9 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""


def with_nul(text: str) -> str:
    """The same text with a NUL line: no longer text to the gateway's sniffing."""
    return text + "\0\n"


def behind_id3(text: str) -> bytes:
    """`text` behind an empty ID3v2 tag: it neither starts like a playlist nor looks like text
    to the gateway, while ffmpeg's format probe skips ID3 tags and still sees `#EXTM3U`."""
    return b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16) + text.encode()


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, payload) ISO-BMFF boxes at one level (32-bit sizes only)."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        boxes.append((kind, data[offset + 8 : offset + size]))
        offset += size
    return boxes


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _alias_record(path: str) -> bytes:
    """A QuickTime `alis` data reference as ffmpeg's mov demuxer reads it: 150 fixed bytes
    (volume, file name, directory levels 0/0, so only an absolute path applies), then an
    absolute-path record (type 2) and the end marker (type -1)."""
    path_field = path.ljust(FIELD_BYTES, "_").encode()
    fixed = bytes(10) + bytes([0]) + bytes(27) + bytes(12)
    fixed += bytes([10]) + b"canary.wav".ljust(63, b"\0") + bytes(16) + struct.pack(">HH", 0, 0)
    fixed += bytes(16)
    records = struct.pack(">hH", 2, len(path_field)) + path_field + struct.pack(">hH", -1, 0)
    return _box(b"alis", bytes(4) + fixed + records)


def mov_with_external_track() -> bytes:
    """A QuickTime movie whose one audio track lives in another file (the canary), named by an
    absolute-path alias in its `dref`. The movie holds the index only: no samples of its own.
    Ten seconds of 8 kHz PCM16, the canary's format, so an ffmpeg that followed the alias would
    decode the canary's speech."""
    movie = ffmpeg(
        ".mov",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=8000:cl=mono",
        "-t",
        "10",
        "-c:a",
        "pcm_s16le",
        "-movflags",
        "+faststart",
    )

    def rewrite(data: bytes) -> bytes:
        out = b""
        for kind, payload in _boxes(data):
            if kind in (b"moov", b"trak", b"mdia", b"minf", b"dinf"):
                payload = rewrite(payload)
            elif kind == b"dref":
                payload = struct.pack(">II", 0, 1) + _alias_record(CANARY_FILE)
            if kind != b"mdat":  # the samples are "elsewhere"
                out += _box(kind, payload)
        return out

    return rewrite(movie)


def audio_with_urls_in_metadata() -> bytes:
    """Matroska audio (JFK's opening) whose tags and chapter titles name the canary by path and
    URL: metadata that a careless player might follow."""
    with tempfile.TemporaryDirectory() as directory:
        chapters = Path(directory) / "chapters.txt"
        file_field = CANARY_FILE.ljust(FIELD_BYTES, "_")
        url_field = CANARY_URL.ljust(FIELD_BYTES, "_")
        chapters.write_text(
            ";FFMETADATA1\n"
            f"[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=file://{file_field}\n"
            f"[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2600\ntitle={url_field}\n"
        )
        return subprocess.run(
            [
                ffmpeg_executable(),
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                str(JFK),
                "-i",
                str(chapters),
                "-map",
                "0:a",
                "-map_chapters",
                "1",
                "-map_metadata",
                "-1",
                "-t",
                str(JFK_OPENING_SECONDS),
                "-ac",
                "1",
                "-ar",
                "16000",
                "-c:a",
                "libopus",
                "-metadata",
                f"comment=file://{file_field}",
                "-metadata",
                f"url={url_field}",
                "-fflags",
                "+bitexact",
                "-flags:a",
                "+bitexact",
                "-f",
                "matroska",
                "-",
            ],
            check=True,
            capture_output=True,
        ).stdout


# --- the corpus ----------------------------------------------------------------------------

CORPUS: dict[str, Callable[[], bytes | str]] = {
    "empty.wav": lambda: b"",
    "header-only.wav": lambda: wav(b"", 16_000, data_size=32_000),
    "zero-samples.wav": lambda: wav(b"", 16_000),
    "cut-in-header.flac": flac_cut_in_header,
    "cut-mid-frame.mp3": cut_mid_frame,
    "riff-size-garbage.wav": lambda: wav(
        jfk(JFK_OPENING_SECONDS, 8000).tobytes(), 8000, riff_size=0xDEADBEEF
    ),
    "fmt-unknown-codec.wav": lambda: wav(quiet_tone(0.1, 16_000).tobytes(), 16_000, codec=0xBEEF),
    "fmt-zero-channels.wav": lambda: wav(quiet_tone(0.1, 16_000).tobytes(), 16_000, channels=0),
    "flac-streaminfo-zeroed.flac": flac_streaminfo_zeroed,
    "mp3-no-frame-sync.mp3": mp3_without_frame_sync,
    "mp3-huge-id3.mp3": mp3_huge_id3,
    "speech-named.pdf": lambda: jfk_mp3(JFK_OPENING_SECONDS),
    "document-named.wav": pdf,
    "document.pdf": pdf,
    "image.png": lambda: test_picture(".png"),
    "image.jpg": lambda: test_picture(".jpg"),
    "notes.txt": lambda: "Minutes of the meeting\n\n- nothing to hear here\n" * 4,
    "program.elf": elf,
    "archive.zip": zip_archive,
    "random.bin": random_bytes,
    "video-no-audio.mp4": video_without_sound,
    "declares-hours.wav": lambda: wav(
        jfk(JFK_OPENING_SECONDS, 8000).tobytes(), 8000, data_size=0xFFFFFFF0
    ),
    "decodes-to-hours.flac": hours_of_silence,
    "decodes-to-hours-undeclared.flac": hours_of_silence_undeclared,
    "rate-1hz.wav": lambda: wav(quiet_tone(40, 1).tobytes(), 1),
    "rate-384khz.flac": lambda: tone_flac(384_000, 0.5),
    "rate-zero.wav": lambda: wav(quiet_tone(0.1, 16_000).tobytes(), 0),
    "rate-2ghz.wav": lambda: wav(quiet_tone(0.1, 16_000).tobytes(), 0x7FFFFFFF),
    "channels-32.wav": lambda: wav(quiet_tone(0.1, 8000, 32).tobytes(), 8000, 32),
    "channels-64.opus": speech_in_channel_0_of_64,
    "channels-65535.wav": lambda: wav(quiet_tone(0.1, 16_000).tobytes(), 16_000, 65535),
    "playlist.m3u8.tmpl": lambda: PLAYLIST,
    "playlist-binary.m3u8.tmpl": lambda: with_nul(PLAYLIST),
    "playlist-behind-id3.m3u8.tmpl": lambda: behind_id3(PLAYLIST),
    "list.ffconcat.tmpl": lambda: CONCAT_LIST,
    "list-binary.ffconcat.tmpl": lambda: with_nul(CONCAT_LIST),
    "session.sdp.tmpl": lambda: SDP,
    "session-binary.sdp.tmpl": lambda: with_nul(SDP),
    "external-track.mov.tmpl": mov_with_external_track,
    "urls-in-metadata.mka.tmpl": audio_with_urls_in_metadata,
}


def main() -> None:
    for stale in HERE.iterdir():
        if stale.is_file() and stale.name not in CORPUS and stale.suffix not in (".py", ".md"):
            stale.unlink()
    total = 0
    for name, build in CORPUS.items():
        data = build()
        data = data.encode() if isinstance(data, str) else data
        (HERE / name).write_bytes(data)
        total += len(data)
        print(f"{len(data):>8}  {name}")
    print(f"{total:>8}  in all")


if __name__ == "__main__":
    main()
