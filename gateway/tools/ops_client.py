"""Call the Triton model `whisper` directly, bypassing the gateway (for operators).

Decodes any audio file with ffmpeg, cuts it into consecutive 30 s windows (no overlap, no
merging: the gateway does that properly) and prints each window's text as it arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.backend.triton_tensors import MODEL_NAME, OUTPUTS, build_inputs, parse_outputs
from gateway.core.contract import TranscribeOptions, WindowResult
from gateway.modes.audio import SAMPLE_RATE, WINDOW_SAMPLES, AudioDecodeError, decode_audio


def windows(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[start : start + WINDOW_SAMPLES] for start in range(0, audio.size, WINDOW_SAMPLES)]


def infer_window(
    client: grpcclient.InferenceServerClient,
    window: np.ndarray,
    options: TranscribeOptions,
    timeout: float,
) -> WindowResult:
    outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
    result = client.infer(
        MODEL_NAME, build_inputs(window, options), outputs=outputs, client_timeout=timeout
    )
    return parse_outputs(result)


def main(argv: list[str] | None = None) -> int:
    """Transcribe FILE with the Triton model directly over gRPC."""
    parser = argparse.ArgumentParser(prog="hermes infer", description=main.__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--language")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--prompt")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--word-timestamps", action="store_true")
    parser.add_argument("--json", action="store_true", help="print each window's segments as JSON")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per window")
    args = parser.parse_args(argv)
    options = TranscribeOptions(
        language=args.language,
        task=args.task,
        prompt=args.prompt,
        temperature=args.temperature,
        word_timestamps=args.word_timestamps,
    )
    try:
        audio = asyncio.run(decode_audio(args.file.read_bytes()))
    except (OSError, AudioDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    client = grpcclient.InferenceServerClient(args.url)
    try:
        for index, window in enumerate(windows(audio)):
            result = infer_window(client, window, options, args.timeout)
            if args.json:
                offset = index * WINDOW_SAMPLES / SAMPLE_RATE
                print(json.dumps({"offset": offset, **asdict(result)}))
            elif result.text:
                print(result.text, flush=True)
    except InferenceServerException as exc:
        print(f"error: Triton at {args.url}: {exc.message()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
