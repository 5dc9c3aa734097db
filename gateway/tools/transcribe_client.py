"""`hermes transcribe FILE`: send a file to a running gateway and print its transcript.

The gateway streams server-sent events (progress, then the transcript or an error); the
transcript is rendered here in the format asked for, as the OpenAI-compatible route would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import aiohttp

from gateway.core.transcript import Transcript
from gateway.server import formats
from gateway.tools import api_key

_LINE_END = re.compile(rb"\r\n|\r|\n")
BAR_WIDTH = 20


class GatewayError(Exception):
    """The gateway failed the job or broke the protocol; the message is for the user."""


async def iter_sse_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The JSON `data` of each server-sent event in `chunks`, however they are split.

    Follows the EventSource parsing rules: lines end with CRLF, LF or CR; a blank line ends an
    event; its `data:` lines are joined with newlines; comments and other fields are ignored;
    an event cut off by the end of the stream is dropped.

    With aiohttp pass `response.content.iter_any()`, not `response.content`: its line iteration
    refuses lines over 128 KiB, and a long transcript is one such `data:` line.
    """
    data: list[str] = []
    async for line in _iter_lines(chunks):
        if not line:
            if data:
                yield _decode_event("\n".join(data))
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))


async def _iter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        start = 0
        for match in _LINE_END.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer):
                break  # maybe the first half of a CRLF split across chunks
            yield buffer[start : match.start()].decode("utf-8", errors="replace")
            start = match.end()
        buffer = buffer[start:]


def _decode_event(data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise GatewayError(f"the gateway sent an event that is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise GatewayError(f"the gateway sent an event that is not a JSON object: {data[:200]}")
    return event


class ProgressBar:
    """One line on a terminal, redrawn in place; draws nothing when disabled."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.drawn = False

    def update(self, processed: float, duration: float) -> None:
        if not self.enabled:
            return
        fraction = min(max(processed / duration, 0.0), 1.0) if duration > 0 else 0.0
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        percent = round(fraction * 100)
        self.stream.write(f"\r[{bar}] {percent:3d}%  {processed:.1f}/{duration:.1f} s")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hermes transcribe", description="Transcribe FILE through a running hermes gateway."
    )
    parser.add_argument("file", type=Path, help="any audio or video file ffmpeg can decode")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    parser.add_argument(
        "--format", default="text", choices=formats.RESPONSE_FORMATS, help="(default: text)"
    )
    parser.add_argument("--language", help="ISO code or name; default: detected")
    parser.add_argument("--prompt", help="text that conditions the decoder: names, jargon")
    parser.add_argument("--temperature", type=float, metavar="T", help="first decoding temperature")
    parser.add_argument("--channel", type=int, metavar="N", help="the audio channel to transcribe")
    parser.add_argument("--word-timestamps", action="store_true", help="ask for word timings")
    parser.add_argument("--output", type=Path, metavar="PATH", help="write here, not to stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up after this many seconds (default: no limit)",
    )
    api_key.add_argument(parser)
    args = parser.parse_args(argv)
    api_key.resolve(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


async def run(args: argparse.Namespace) -> int:
    try:
        audio = args.file.open("rb")
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    progress = ProgressBar(sys.stderr, enabled=not args.no_progress and sys.stderr.isatty())
    url = f"{args.url.rstrip('/')}/transcribe"
    try:
        with audio:
            transcript = await request_transcript(
                url, _form(args, audio), args.timeout, progress, key=args.api_key
            )
    except aiohttp.ClientConnectorError as exc:
        return _fail(progress, f"cannot reach the gateway at {args.url}: {exc.os_error}")
    except TimeoutError:
        return _fail(progress, f"no complete answer from the gateway within {args.timeout} s")
    except aiohttp.ClientError as exc:
        return _fail(
            progress, f"connection to the gateway at {args.url} failed: {type(exc).__name__}: {exc}"
        )
    except GatewayError as exc:
        return _fail(progress, str(exc))
    progress.close()
    granularities = {"segment", "word"} if args.word_timestamps else {"segment"}
    body, _ = formats.render(transcript, args.format, granularities=granularities)
    if args.output is None:
        sys.stdout.write(body)
        return 0
    try:
        args.output.write_text(body, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def request_transcript(
    url: str,
    form: aiohttp.FormData,
    timeout: float | None,
    progress: ProgressBar,
    *,
    key: str | None = None,
) -> Transcript:
    """POST `form` to the gateway's streaming `/transcribe` and follow its events to the end,
    with the API key `key` if there is one."""
    headers = {"Accept": "text/event-stream", **api_key.headers(key)}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(url, data=form, headers=headers) as response,
    ):
        if not response.ok:
            hint = f"; {api_key.HINT}" if response.status == 401 else ""
            raise GatewayError(f"{await _error_message(response)} (HTTP {response.status}){hint}")
        if response.content_type != "text/event-stream":
            raise GatewayError(f"the gateway answered {response.content_type}, not an event stream")
        async for event in iter_sse_events(response.content.iter_any()):
            try:
                transcript = _follow(event, progress)
            except (KeyError, TypeError, ValueError) as exc:
                raise GatewayError(f"the gateway sent a malformed event: {exc!r}") from exc
            if transcript is not None:
                return transcript
    raise GatewayError("the gateway closed the stream before the transcript was done")


def _follow(event: dict[str, Any], progress: ProgressBar) -> Transcript | None:
    """Acts on one event: the transcript once done, None before; an error event raises."""
    match event.get("type"):
        case "progress":
            progress.update(float(event["processed"]), float(event["duration"]))
        case "done":
            return Transcript.from_json(event["transcript"])
        case "error":
            raise GatewayError(event["error"]["message"])
    return None


def _form(args: argparse.Namespace, audio: BinaryIO) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", audio, filename=args.file.name)
    fields = {
        "language": args.language,
        "prompt": args.prompt,
        "temperature": args.temperature,
        "channel": args.channel,
        "word_timestamps": "true" if args.word_timestamps else None,
    }
    for name, value in fields.items():
        if value is not None:
            form.add_field(name, str(value))
    form.add_field("stream", "true")
    return form


async def _error_message(response: aiohttp.ClientResponse) -> str:
    """The `error.message` of the gateway's JSON error body, or the raw body."""
    text = await response.text(errors="replace")
    try:
        return json.loads(text)["error"]["message"]
    except (ValueError, TypeError, KeyError):
        return text.strip() or response.reason or "no message"


def _fail(progress: ProgressBar, message: str) -> int:
    progress.close()
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
