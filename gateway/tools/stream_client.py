"""`hermes stream FILE`: play a file to the gateway's WebSocket as if it were live.

The file is decoded to 16 kHz mono, sent as PCM16 frames paced in real time (or as fast as the
socket takes them with `--fast`), and the transcript is printed as the gateway commits it. On
a terminal the gateway's current partial is shown greyed after the committed text and redrawn
in place; piped, only the committed text is written, so the output is the transcript.

Protocol: a `config` text message first, then binary audio frames, then `{"type": "stop"}`;
the gateway answers with `partial`, `final`, `error` and, once everything is flushed, `done`.
Messages are read in their own task while the audio is being sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import numpy as np

from gateway.modes.audio import SAMPLE_RATE, AudioDecodeError, decode_audio
from gateway.tools import api_key

DEFAULT_URL = "ws://127.0.0.1:8080/stream-audio"
DEFAULT_FRAME_MS = 100
MAX_FRAME_MS = 10_000  # 320 KB of PCM16: well under the gateway's frame size limit
STOP_GRACE_SECONDS = 3.0  # after Ctrl-C: how long to wait for the gateway's `done`
EXPLAIN_SECONDS = 1.0  # after a failed send: how long to wait for the close frame that says why
CLOSE_SECONDS = 2.0  # how long our closing handshake may wait for the gateway's answer
EXIT_INTERRUPTED = 130

GREY = "\x1b[90m"
RESET = "\x1b[0m"
CLEAR_TO_EOL = "\x1b[K"

# What the gateway's close codes mean, for a close frame that carries no reason.
CLOSE_MEANINGS = {
    1000: "closed",
    1001: "the gateway is shutting down",
    1006: "connection lost",
    1008: "idle timeout",
    1011: "internal error",
    1013: "too many streams",
}


class GatewayClosed(Exception):
    """The gateway closed the WebSocket before it sent `done`."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason or CLOSE_MEANINGS.get(code or 0, "")
        detail = f"code {code}" if code is not None else "no close code"
        if self.reason:
            detail += f": {self.reason}"
        super().__init__(f"the gateway closed the stream ({detail})")


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] as signed 16-bit little-endian PCM."""
    scaled = np.round(np.clip(samples, -1.0, 1.0) * 32767.0)
    return scaled.astype("<i2").tobytes()


def config_message(language: str | None = None, prompt: str | None = None) -> dict[str, Any]:
    """The first message of a stream: the audio format, and only the options given."""
    config: dict[str, Any] = {"type": "config", "sample_rate": SAMPLE_RATE, "encoding": "pcm_s16le"}
    if language is not None:
        config["language"] = language
    if prompt is not None:
        config["prompt"] = prompt
    return config


def frame_samples(frame_ms: float) -> int:
    """Samples in one frame of `frame_ms` milliseconds at 16 kHz (at least one)."""
    return max(1, round(SAMPLE_RATE * frame_ms / 1000))


class TranscriptPrinter:
    """Renders the gateway's messages: live on a terminal, the bare transcript when piped.

    On a terminal the committed text of the current line is followed by the current partial in
    grey, redrawn in place with `\\r` and clear-to-end-of-line; committed text that no longer
    fits the terminal's width is wrapped at a space onto new lines. Not on a terminal only the
    finals are written, as they arrive. With `json_lines` every message is one JSON line.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool,
        json_lines: bool = False,
        err: TextIO | None = None,
        width: int | None = None,
    ) -> None:
        self.out = out
        self.err = err if err is not None else sys.stderr
        self.tty = tty and not json_lines
        self.json_lines = json_lines
        self.finals: list[str] = []
        self._width = width
        self._line = ""  # committed text on the terminal's current line
        self._partial = ""
        self._written = False  # piped: whether any transcript text went out yet

    @property
    def transcript(self) -> str:
        """The committed text so far: the finals concatenated, stripped."""
        return "".join(self.finals).strip()

    def show(self, message: dict[str, Any]) -> None:
        """Acts on one message from the gateway."""
        if self.json_lines:
            self.out.write(json.dumps(message, ensure_ascii=False) + "\n")
            self.out.flush()
        match message.get("type"):
            case "final":
                text = _text(message)
                self.finals.append(text)
                if not self.json_lines:
                    self._final(text)
            case "partial":
                if self.tty:
                    self._partial = _text(message)
                    self._draw()
            case "error":
                self.error(str(message.get("message") or "unknown error from the gateway"))

    def error(self, text: str) -> None:
        """`error: text` on stderr, moving the live line out of the way on a terminal."""
        if self.tty and (self._line or self._partial):
            self._end_line()
        self.err.write(f"error: {text}\n")
        self.err.flush()
        if self.tty and self._partial:
            self._draw()

    def finish(self) -> None:
        """Ends the output: drops the partial and writes the last newline."""
        if self.json_lines:
            return
        if self.tty:
            self._partial = ""
            self._end_line()
        else:
            self.out.write("\n")
            self.out.flush()

    def _final(self, text: str) -> None:
        if not self.tty:
            if not self._written:
                text = text.lstrip()
            if text:
                self.out.write(text)
                self.out.flush()
                self._written = True
            return
        self._partial = ""  # the final covers (at least part of) it; a new partial follows
        self._line = (self._line + text) if self._line else text.lstrip()
        limit = self._columns() - 1
        while len(self._line) > limit:
            cut = self._line.rfind(" ", 1, limit + 1)
            if cut <= 0:
                cut = limit
            head, self._line = self._line[:cut], self._line[cut:].lstrip()
            self.out.write(f"\r{head}{CLEAR_TO_EOL}\n")
        self._draw()

    def _draw(self) -> None:
        limit = self._columns() - 1
        partial = self._partial if self._line else self._partial.lstrip()
        if self._line and len(self._line) + len(partial) > limit:
            self._end_line()  # the committed text stays; the partial goes on the next line
            partial = partial.lstrip()
        if len(partial) > limit:
            partial = "…" + partial[len(partial) - limit + 1 :]
        shown = f"{GREY}{partial}{RESET}" if partial else ""
        self.out.write(f"\r{self._line}{shown}{CLEAR_TO_EOL}")
        self.out.flush()

    def _end_line(self) -> None:
        self.out.write(f"\r{self._line}{CLEAR_TO_EOL}\n")
        self.out.flush()
        self._line = ""

    def _columns(self) -> int:
        width = self._width or shutil.get_terminal_size((80, 24)).columns
        return max(width, 20)


def _text(message: dict[str, Any]) -> str:
    text = message.get("text")
    return text if isinstance(text, str) else ""


async def receive_messages(ws: aiohttp.ClientWebSocketResponse, printer: TranscriptPrinter) -> None:
    """Shows the gateway's messages until `done`; GatewayClosed if the socket closes first."""
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            try:
                message = json.loads(msg.data)
            except json.JSONDecodeError:
                message = None
            if not isinstance(message, dict):
                printer.error(
                    f"the gateway sent a message that is not a JSON object: {msg.data[:200]}"
                )
                continue
            printer.show(message)
            if message.get("type") == "done":
                return
        elif msg.type is aiohttp.WSMsgType.CLOSE:
            raise GatewayClosed(msg.data, msg.extra or "")
        elif msg.type is aiohttp.WSMsgType.ERROR:
            raise GatewayClosed(ws.close_code, f"{type(msg.data).__name__}: {msg.data}")
        elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise GatewayClosed(ws.close_code)
        # binary messages (none in the protocol) are ignored


async def send_audio(
    ws: aiohttp.ClientWebSocketResponse, pcm: bytes, samples_per_frame: int, *, realtime: bool
) -> None:
    """Sends `pcm` in frames; in real time frame k leaves at start + k * frame duration."""
    frame_bytes = samples_per_frame * 2
    frame_seconds = samples_per_frame / SAMPLE_RATE
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k, offset in enumerate(range(0, len(pcm), frame_bytes)):
        if realtime:
            delay = start + k * frame_seconds - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await ws.send_bytes(pcm[offset : offset + frame_bytes])
        if not realtime:
            await asyncio.sleep(0)  # let the reader show what has come back meanwhile


async def stream(
    url: str,
    config: dict[str, Any],
    pcm: bytes,
    printer: TranscriptPrinter,
    *,
    samples_per_frame: int,
    realtime: bool = True,
    interrupted: asyncio.Event | None = None,
    key: str | None = None,
) -> bool:
    """One streaming session: True once the gateway said `done`, False if interrupted first.
    `key`: the API key, sent on the handshake as `Authorization: Bearer`.

    Raises GatewayClosed when the gateway closes the socket before `done`, and aiohttp's
    errors when it cannot be reached or refuses the WebSocket handshake.
    """
    interrupted = interrupted if interrupted is not None else asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(
            url,
            timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_SECONDS),
            headers=api_key.headers(key),
        ) as ws,
    ):
        reader = asyncio.create_task(receive_messages(ws, printer))
        sender: asyncio.Task[None] | None = None
        stopper = asyncio.create_task(interrupted.wait())
        try:
            await _send(ws.send_json(config), reader)
            sender = asyncio.create_task(send_audio(ws, pcm, samples_per_frame, realtime=realtime))
            await asyncio.wait({reader, sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():  # `done` already, or the gateway closed the socket
                reader.result()
                return True
            if stopper.done():  # Ctrl-C: no more audio
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            else:  # all the audio is out
                await _send(sender, reader)
            await _send(ws.send_json({"type": "stop"}), reader)
            if not stopper.done():
                await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper.done():  # Ctrl-C: what the gateway has left, briefly
                await asyncio.wait({reader}, timeout=STOP_GRACE_SECONDS)
                return False
            reader.result()
            return True
        except _Done:
            return True
        finally:
            tasks = [task for task in (reader, sender, stopper) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class _Done(Exception):
    """The gateway said `done` while something was still being sent."""


async def _send(sending: Awaitable[None], reader: asyncio.Task[None]) -> None:
    """Awaits a send; if the socket broke, the reader's close frame usually says why."""
    try:
        await sending
    except (aiohttp.ClientError, ConnectionError) as exc:
        await asyncio.wait({reader}, timeout=EXPLAIN_SECONDS)
        if reader.done() and not reader.cancelled():
            reader.result()  # GatewayClosed with the gateway's code and reason
            raise _Done from exc
        raise GatewayClosed(None, f"{type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def sigint_sets(event: asyncio.Event) -> Iterator[None]:
    """While inside, the first Ctrl-C sets `event`; a second one interrupts as usual."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    installed = False

    def restore() -> None:
        nonlocal installed
        if installed:
            installed = False
            loop.remove_signal_handler(signal.SIGINT)
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def on_sigint() -> None:
        event.set()
        restore()

    if threading.current_thread() is threading.main_thread():
        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # no signal handling on this loop: Ctrl-C interrupts as usual
    try:
        yield
    finally:
        restore()


def positive_ms(value: str) -> float:
    try:
        ms = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < ms <= MAX_FRAME_MS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_FRAME_MS} ms")
    return ms


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hermes stream",
        description="Stream FILE to a running hermes gateway as if live; print the transcript.",
    )
    parser.add_argument("file", type=Path, help="any audio or video file ffmpeg can decode")
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"the gateway's streaming WebSocket (default: {DEFAULT_URL})",
    )
    parser.add_argument(
        "--fast", action="store_true", help="send as fast as possible, not in real time"
    )
    parser.add_argument("--language", help="ISO code or name; default: detected")
    parser.add_argument("--prompt", help="text that conditions the decoder: names, jargon")
    parser.add_argument(
        "--frame-ms",
        type=positive_ms,
        default=DEFAULT_FRAME_MS,
        metavar="MS",
        help=f"audio per binary frame (default: {DEFAULT_FRAME_MS})",
    )
    parser.add_argument(
        "--output", type=Path, metavar="PATH", help="also write the transcript here"
    )
    parser.add_argument(
        "--json", action="store_true", help="print every gateway message as a JSON line"
    )
    api_key.add_argument(parser)
    args = parser.parse_args(argv)
    api_key.resolve(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:  # before streaming began, or a second Ctrl-C
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout piped into something that stopped reading (`| head`)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return 1


async def run(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        samples = await decode_audio(data)
    except AudioDecodeError as exc:
        print(f"error: cannot decode {args.file}: {exc}", file=sys.stderr)
        return 2
    pcm = to_pcm16(samples)
    printer = TranscriptPrinter(sys.stdout, tty=sys.stdout.isatty(), json_lines=args.json)
    interrupted = asyncio.Event()
    try:
        with sigint_sets(interrupted):
            completed = await stream(
                args.url,
                config_message(args.language, args.prompt),
                pcm,
                printer,
                samples_per_frame=frame_samples(args.frame_ms),
                realtime=not args.fast,
                interrupted=interrupted,
                key=args.api_key,
            )
    except aiohttp.ClientConnectorError as exc:
        print(f"error: cannot reach the gateway at {args.url}: {exc.os_error}", file=sys.stderr)
        return 1
    except aiohttp.WSServerHandshakeError as exc:
        hint = f"; {api_key.HINT}" if exc.status == 401 else ""
        print(
            f"error: the gateway at {args.url} refused the stream "
            f"(HTTP {exc.status}: {exc.message}){hint}",
            file=sys.stderr,
        )
        return 1
    except aiohttp.InvalidURL:
        print(f"error: not a WebSocket URL: {args.url}", file=sys.stderr)
        return 2
    except GatewayClosed as exc:
        printer.finish()
        print(f"error: {exc}", file=sys.stderr)
        _write_output(args.output, printer.transcript)
        return 1
    except aiohttp.ClientError as exc:
        printer.finish()
        print(
            f"error: connection to the gateway at {args.url} failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    printer.finish()
    if not _write_output(args.output, printer.transcript):
        return 1
    return 0 if completed else EXIT_INTERRUPTED


def _write_output(path: Path | None, transcript: str) -> bool:
    """Writes the transcript to `path` (if any); False, with a message, if that fails."""
    if path is None:
        return True
    try:
        path.write_text(transcript + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
