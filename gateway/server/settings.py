"""All gateway configuration, in one typed place.

Every field can be set by an environment variable `HERMES_<FIELD>` (e.g. `HERMES_PORT=9000`,
`HERMES_TRITON_URL=triton:8001`) and by a command-line flag `--<field>` (e.g. `--port 9000`);
flags win over the environment, the environment over the defaults below.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.backend.endpoints import Endpoint, parse_endpoints
from gateway.modes.audio import SAMPLE_RATE, most_decoded_bytes
from gateway.server.logs import LOG_FORMATS
from gateway.server.origins import parse_origins

ENV_PREFIX = "HERMES_"
# The gateway's memory beside what clients make it hold: Python, aiohttp, ONNX Runtime and the
# voice detector (130-180 MiB idle in the hostile soak), with room for the heap's churn
GATEWAY_OWN_MB = 300.0
_KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: fits a header and a URL


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    log_format: str = "text"  # or json: one object per line, for log collectors

    # The Triton server and its model
    # gRPC host:port of each replica, comma-separated; a name may resolve to several
    triton_url: str = "127.0.0.1:8001"
    triton_model: str = "whisper"
    triton_timeout_s: float = 300.0  # per window, queueing included
    triton_ready_timeout_s: float = 2.0  # for /readyz and replica probes
    triton_probe_interval_s: float = 2.0  # how often replicas' readiness is checked
    triton_resolve_interval_s: float = 30.0  # how often names are resolved again

    # Uploads
    max_upload_mb: float = 100.0
    max_audio_seconds: float = 3 * 3600.0  # 659 MB decoded: it must fit max_decoded_audio_mb
    # decoded audio all uploads together may hold (4 bytes a sample): over-long files arriving
    # at once cannot add up; beyond it, 503 server_busy
    max_decoded_audio_mb: float = 768.0
    decode_timeout_s: float = 300.0
    # the whole body must arrive within this (408 after): a client trickling bytes holds a place
    upload_read_timeout_s: float = 120.0
    max_uploads_running: int = 4  # transcribed at once; each holds file_windows_in_flight
    max_uploads_waiting: int = 16  # beyond this many waiting, 503 with Retry-After
    # running or waiting from one client (API key, or address without keys): one client
    # cannot fill the waiting room, slow bodies or not
    max_uploads_per_client: int = 8  # as max_streams_per_client
    # a client with this many uploads refused (4xx) within the window is answered 429 with
    # Retry-After, before its body is read, until the oldest of them leaves the window
    max_refused_uploads_per_client: int = 10
    refused_uploads_window_s: float = 60.0

    # File mode: speech packed into windows of at most this (30 s: Whisper's input) less 3 s
    window_seconds: float = 30.0
    # per file: bounded so one file cannot flood Triton (8: a 4-minute file in one execution)
    file_windows_in_flight: int = 8
    # file windows (uploads, streams read ahead of real time) at the model, all of them
    # together, while a live stream is open: its steps wait behind one execution of them
    file_windows_beside_streams: int = 4

    # Real-time mode
    # Live streams step together on a shared beat whose period follows the load, from
    # stream_min_step_seconds up to stream_step_seconds (busy); slower than that, streams
    # skip their oldest audio. The default beat is a fixed 3 s: at 1 s, hypotheses of the
    # first seconds of speech can agree on a wrong word (jfk: "am I fellow" committed)
    stream_step_seconds: float = 3.0
    stream_min_step_seconds: float = 3.0
    max_streams: int = 16  # concurrent WebSocket streams; the next one is refused (1013)
    max_streams_per_client: int = 8  # per API key, or per address without keys (1013)
    stream_idle_timeout_s: float = 30.0  # no audio or message for this long closes (1008)
    stream_max_frame_bytes: int = 1 << 20
    # audio a stream may hold before the model has read it (at least a window, 30 s, and a
    # step's wait): from a client further ahead of real time, the oldest goes (`skipped`)
    stream_max_buffer_seconds: float = 60.0
    stream_max_session_s: float = 4 * 3600.0  # then the stream is flushed and closed (1008)

    # Access control: all off by default, for local use (docs/design.md, "Security and limits")
    api_keys: str = field(default="", repr=False)  # comma-separated; api_keys_file is safer
    api_keys_file: str = ""  # one key per line: a mounted secret; its keys add to api_keys
    allowed_origins: str = (
        ""  # pages that may open /stream-audio besides the gateway's own; * = any
    )
    cors_origins: str = ""  # origins whose pages may call the HTTP API (CORS); empty = no CORS

    # SIGTERM: in-flight uploads and streams get this long to finish before being cut off
    shutdown_timeout_s: float = 30.0
    # how often freed memory is given back to the OS (gateway/server/heap.py); 0: never
    heap_trim_interval_s: float = 10.0

    # Parsed once from the fields above, when the settings are made (never set by hand)
    triton_endpoints: tuple[Endpoint, ...] = field(init=False, repr=False, compare=False)
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)  # empty: keys are off
    websocket_origins: frozenset[str] = field(init=False, repr=False, compare=False)
    cors_allowed_origins: frozenset[str] = field(init=False, repr=False, compare=False)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def worst_case_memory_mb(self) -> float:
        """The most the gateway holds with these settings (MiB): its own, every upload body
        being read or waiting, the decoded audio of all uploads together, and every live
        stream's buffer full. The deployments' memory limits are checked against it."""
        bodies = (self.max_uploads_running + self.max_uploads_waiting) * self.max_upload_mb
        streams = self.max_streams * self.stream_max_buffer_seconds * SAMPLE_RATE * 4 / 2**20
        return GATEWAY_OWN_MB + bodies + self.max_decoded_audio_mb + streams

    def __post_init__(self) -> None:
        """Check every value and parse the ones that are lists; ValueError says which."""
        if self.window_seconds > 30:
            raise ValueError("window_seconds must be at most 30: Whisper reads at most 30 s")
        if self.window_seconds < 5:
            raise ValueError("window_seconds below 5 leaves the model too little context")
        positive = (
            "file_windows_in_flight",
            "file_windows_beside_streams",
            "max_upload_mb",
            "max_audio_seconds",
            "stream_step_seconds",
            "stream_min_step_seconds",
            "max_streams",
            "stream_idle_timeout_s",
            "stream_max_session_s",
            "triton_probe_interval_s",
            "triton_resolve_interval_s",
            "max_uploads_running",
            "shutdown_timeout_s",
            "upload_read_timeout_s",
            "max_streams_per_client",
            "max_uploads_per_client",
            "max_refused_uploads_per_client",
            "refused_uploads_window_s",
        )
        if nonpositive := [name for name in positive if getattr(self, name) <= 0]:
            raise ValueError(f"{', '.join(nonpositive)} must be positive")
        decoded_mb = most_decoded_bytes(self.max_audio_seconds) / 2**20
        if decoded_mb > self.max_decoded_audio_mb:
            raise ValueError(
                f"max_audio_seconds must fit max_decoded_audio_mb: {self.max_audio_seconds:g} s "
                f"decode to {decoded_mb:.0f} MB"
            )
        if self.stream_max_buffer_seconds < 35:
            raise ValueError("stream_max_buffer_seconds must be at least 35: a window and a step")
        if self.stream_min_step_seconds > self.stream_step_seconds:
            raise ValueError("stream_min_step_seconds must be at most stream_step_seconds")
        if self.max_uploads_waiting < 0 or self.heap_trim_interval_s < 0:
            raise ValueError("max_uploads_waiting and heap_trim_interval_s must be 0 or more")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(
                f"log_format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}"
            )
        parsed = {
            "triton_endpoints": parse_endpoints(self.triton_url),
            "keys": read_api_keys(self.api_keys, self.api_keys_file),
            "websocket_origins": _origins("allowed_origins", self.allowed_origins),
            "cors_allowed_origins": _origins("cors_origins", self.cors_origins),
        }
        for name, value in parsed.items():
            object.__setattr__(self, name, value)  # frozen: set once, here


def _origins(name: str, value: str) -> frozenset[str]:
    try:
        return parse_origins(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def read_api_keys(api_keys: str, api_keys_file: str) -> tuple[str, ...]:
    """The keys of `api_keys` (comma-separated) and of the file `api_keys_file` (one per line;
    blank lines and `#` comments ignored). ValueError, never quoting a key, for an unreadable
    or empty file or a key that is not printable ASCII without spaces."""
    keys = [key.strip() for key in api_keys.split(",") if key.strip()]
    if api_keys_file:
        try:
            lines = Path(api_keys_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(
                f"api_keys_file: cannot read {api_keys_file}: {exc.strerror or exc}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"api_keys_file: {api_keys_file} is not UTF-8 text") from exc
        from_file = [
            line.strip() for line in lines if line.strip() and not line.strip().startswith("#")
        ]
        if not from_file:
            raise ValueError(f"api_keys_file: {api_keys_file} holds no key")
        keys += from_file
    for number, key in enumerate(keys, 1):
        if not _KEY.fullmatch(key):
            raise ValueError(
                f"API key #{number} has spaces or characters other than printable ASCII"
            )
    return tuple(dict.fromkeys(keys))


def _convert(value: str, kind: Any, name: str) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        raise ValueError(f"{name}: cannot read {value!r} as {kind.__name__}") from exc


def _field_types() -> dict[str, type]:
    defaults = Settings()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(Settings) if f.init}


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: _convert(environ[ENV_PREFIX + name.upper()], kind, ENV_PREFIX + name.upper())
        for name, kind in _field_types().items()
        if ENV_PREFIX + name.upper() in environ
    }


def from_env(environ: Mapping[str, str] = os.environ) -> Settings:
    return Settings(**_env_values(environ))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, kind in _field_types().items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,
            help=f"(env {ENV_PREFIX}{name.upper()}, default {getattr(Settings(), name)!r})",
        )


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Defaults, then `HERMES_*` variables, then flags."""
    parser = argparse.ArgumentParser(prog="hermes serve", description="Run the hermes gateway.")
    add_arguments(parser)
    flags = {
        key: value for key, value in vars(parser.parse_args(argv)).items() if value is not None
    }
    return Settings(**{**_env_values(environ), **flags})
