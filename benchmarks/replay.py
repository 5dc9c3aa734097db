"""Replay a live stream offline: the gateway's `StreamSession` against the model's
`BatchTranscriber` in this process, on a virtual clock. No Triton, no sockets, no waiting for
real time: a 6.7-minute stream replays in about a minute, and two runs of the same settings
give the same transcript. For tuning what a stream's steps cost and commit; the capacity
benchmark (`python -m benchmarks --only streaming`) measures the real service.

    python -m benchmarks.replay [--plan stream-63s|composite|conversation|...] [--beat 3]
        [--lead 0.4] [--context full]

`--lead` puts that much silence before the audio: where the beats fall in the speech moves,
and with it what each step hears (a made-up "Thank you." came on 2 of 5 leads of a 1 s beat).
Prints the stream's WER against the reference, the model's seconds (the CPU work of all
steps), and word latency on the virtual clock: when the step that committed a word ended
(its beat plus the model's time) minus the word's end in the audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks import composite, speech
from benchmarks.audio import PROJECT_ROOT
from benchmarks.report import TMP_DIR
from gateway.core.contract import Priority, TranscribeOptions, WindowResult
from gateway.core.transcript import Segment, Word
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_input import FrameDecoder, StreamConfig
from gateway.modes.streaming import StreamSession
from testsupport.wer import word_error_rate

# the model's own modules, as Triton's stub imports them
sys.path.insert(0, str(PROJECT_ROOT / "model_repository" / "whisper" / "1"))
from checkpoint import load_model
from transcriber import BatchTranscriber, TranscriptionRequest, cpu_computes_bfloat16


class InProcessModel:
    """The `AsrBackend` protocol over a `BatchTranscriber`, timing every call."""

    def __init__(self, transcriber: BatchTranscriber, low_latency: bool) -> None:
        self.transcriber = transcriber
        self.low_latency = low_latency  # False: full 30 s windows, as before LOW_LATENCY
        self.seconds = 0.0

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        request = TranscriptionRequest(
            audio=audio.astype(np.float32),
            language=options.language or "en",
            prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            low_latency=options.low_latency and self.low_latency,
        )
        started = time.perf_counter()
        result = self.transcriber.transcribe([request])[0]
        self.seconds += time.perf_counter() - started
        # through JSON, as the segments travel from Triton (numpy floats become floats)
        segments = json.loads(json.dumps(result.segments, default=float))
        return WindowResult(result.text, result.language, tuple(map(Segment.from_json, segments)))

    async def is_ready(self) -> bool:
        return True


@dataclass
class Replay:
    text: str
    model_seconds: float
    word_latencies: list[float]


def newly_committed(session: StreamSession, before: int) -> list[Word]:
    """The words committed since `before` had been in all (the agreement keeps the latest)."""
    new = session.agreement.committed_count - before
    return list(session.agreement.committed)[-new:] if new else []


async def replay(audio: np.ndarray, model: InProcessModel, beat_s: float) -> Replay:
    """Feed `audio` one beat at a time; step whenever the session is due, as on the beat."""
    config = StreamConfig(encoding="f32le")
    session = StreamSession(model, config, min_new_audio_s=beat_s)
    decoder = FrameDecoder(config)
    beat = int(beat_s * SAMPLE_RATE)
    texts: list[str] = []
    latencies: list[float] = []

    def collect(messages: list[dict[str, Any]]) -> None:
        texts.extend(m["text"] for m in messages if m["type"] == "final")

    for start in range(0, audio.size, beat):
        chunk = audio[start : start + beat]
        session.append(decoder.decode(chunk.tobytes()))
        if not session.step_due:
            continue
        now = (start + chunk.size) / SAMPLE_RATE
        before_s, committed = model.seconds, session.agreement.committed_count
        collect(await session.step())
        done_at = now + model.seconds - before_s
        latencies += [done_at - word.end for word in newly_committed(session, committed)]
    collect(await session.finish(decoder.flush()))
    return Replay("".join(texts), model.seconds, latencies)


def in_process_model(
    threads: int, *, low_latency: bool = True, bfloat16: bool | None = None
) -> InProcessModel:
    """tiny.en as Triton's model instance would run it (bfloat16 None: where the CPU has it)."""
    torch.set_num_threads(threads)
    loaded = load_model("tiny.en", torch.device("cpu"))
    transcriber = BatchTranscriber(
        loaded.model,
        fp16=False,
        low_latency_bfloat16=cpu_computes_bfloat16() if bfloat16 is None else bfloat16,
    )
    transcriber.warm_up()
    return InProcessModel(transcriber, low_latency=low_latency)


def plan_audio(name: str) -> tuple[np.ndarray, str]:
    """The samples and reference text of a composite (`benchmarks.composite`) or of a
    synthesized plan (`benchmarks.speech`: conversation, continuous speech, ...)."""
    if name in composite.PLANS:
        item = composite.build(TMP_DIR / f"{name}.wav", composite.PLANS[name]).item
        return item.audio, item.text
    built = speech.build(speech.PLANS[name])
    return np.asarray(built.audio), built.text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--plan", choices=sorted({*composite.PLANS, *speech.PLANS}), default=composite.STREAM.name
    )
    parser.add_argument("--beat", type=float, default=3.0, help="seconds of audio per step")
    parser.add_argument(
        "--lead", type=float, default=0.0, help="seconds of silence before the audio"
    )
    parser.add_argument(
        "--context",
        choices=["low-latency", "full"],
        default="low-latency",
        help="the encoder context of stream steps",
    )
    parser.add_argument(
        "--bfloat16",
        choices=["auto", "true", "false"],
        default="auto",
        help="low-latency steps in bfloat16 (auto: where the CPU has it)",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    audio, text = plan_audio(args.plan)
    audio = np.concatenate([np.zeros(round(args.lead * SAMPLE_RATE), np.float32), audio])
    duration = audio.size / SAMPLE_RATE
    bfloat16 = cpu_computes_bfloat16() if args.bfloat16 == "auto" else args.bfloat16 == "true"
    model = in_process_model(
        args.threads, low_latency=args.context == "low-latency", bfloat16=bfloat16
    )
    result = asyncio.run(replay(audio, model, args.beat))
    quantiles = statistics.quantiles(result.word_latencies, n=20)
    print(
        f"{args.plan} ({duration:.1f} s with a {args.lead:g} s lead), {args.beat:g} s beat, "
        f"context {args.context}, bfloat16 {bfloat16}: "
        f"WER {100 * word_error_rate(text, result.text):.1f} %, "
        f"model {result.model_seconds:.1f} s ({result.model_seconds / duration:.3f} s "
        f"per audio s), word latency p50 {statistics.median(result.word_latencies):.2f} s, "
        f"p95 {quantiles[-1]:.2f} s"
    )
    print(result.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
