"""Replay live streams offline: the gateway's `StreamSession`s against the model's
`BatchTranscriber` in this process, on a virtual clock. No Triton, no sockets, no waiting for
real time: a 6.7-minute stream replays in about a minute, and two runs of one stream with the
same settings give the same transcript. For tuning what a stream's steps cost and commit; the
capacity benchmark (`python -m benchmarks --only streaming`) measures the real service.

    python -m benchmarks.replay [--plan stream-63s|composite|conversation|...] [--beat 3]
        [--max-beat S] [--streams N] [--lead 0.4] [--context full] [--drafts off]
        [--cost FIXED,PER_S[,context]]

With `--streams N` the plan is streamed N times, their starts spread over 3 s as in the
capacity benchmark, all on one `StepClock` (period from `--beat` up to `--max-beat`, following
the rounds' time as in the service): the steps due on a beat are answered by one
`BatchTranscriber` call, as Triton's dynamic batcher runs them in one execution of its one
model instance (a batch waits for the one before it), and a stream whose step ends after the
next beat waits for the one after. Not modelled: the gateway's own CPU work, gRPC, and the
model's threads sharing the cores with it.

`--lead` puts that much silence before the audio: where the beats fall in the speech moves,
and with it what each step hears (a made-up "Thank you." came on 2 of 5 leads of a 1 s beat).
Each execution moves the virtual clock by the time it took, which varies by a quarter on a
noisy VM; with several streams that moves where later steps fall and what they hear, so two
runs differ. `--cost` charges each execution a fixed time plus a time per second of its
batch's audio (or of its encoder context) instead: runs then repeat exactly, and two policies
compare word for word.

Prints the streams' WER against the reference, the model's seconds (the CPU work of all
steps), the model executions, and word latency on the virtual clock: when the step that
committed a word ended (its beat plus the model's time) minus the word's end in the audio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import statistics
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from benchmarks import composite, speech
from benchmarks.audio import PROJECT_ROOT
from benchmarks.report import TMP_DIR
from gateway.backend.triton_tensors import draft_json
from gateway.core.contract import Priority, TranscribeOptions, WindowResult
from gateway.core.transcript import Segment, Word
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.step_clock import StepClock
from gateway.modes.stream_input import FrameDecoder, StreamConfig
from gateway.modes.streaming import StreamSession
from testsupport.wer import word_error_rate

# the model's own modules, as Triton's stub imports them
sys.path.insert(0, str(PROJECT_ROOT / "model_repository" / "whisper" / "1"))
from checkpoint import load_model
from transcriber import (
    FRAMES_PER_SECOND,
    BatchTranscriber,
    TranscriptionRequest,
    cpu_computes_bfloat16,
    encoder_frames,
    parse_draft,
)

_T = TypeVar("_T")

# the capacity benchmark spreads its streams' starts over one default step
STARTS_SPREAD_SECONDS = 3.0
FRAME_SAMPLES = SAMPLE_RATE // 10  # audio arrives in 100 ms frames, as the benchmark sends it
# the coroutine of the call (`InProcessModel.call`) a model request comes from
_CALLER: contextvars.ContextVar[object] = contextvars.ContextVar("replay_caller")


@dataclass(frozen=True)
class CostModel:
    """An execution's time on the virtual clock, instead of the time it took: a fixed part
    and a part per second of the batch's audio, or of its encoder context (`by_context`: the
    audio and its padding, in whole 5 s, as the encoder computes it). The time taken varies by
    a quarter on a noisy VM, and moves where every later step falls; with a cost model two
    runs of the same settings step alike, so two policies compare word for word and latency
    for latency. Near the point where the streams fall behind, a cost model decides which
    side a policy lands on: check a result with the other kind of cost."""

    fixed_s: float
    per_second: float
    by_context: bool = False

    def of(self, seconds: float) -> float:
        return self.fixed_s + self.per_second * seconds

    @classmethod
    def parse(cls, text: str) -> CostModel:
        """`FIXED,PER_S` (per second of audio) or `FIXED,PER_S,context`."""
        fixed, per_second, *kind = text.split(",")
        if kind not in ([], ["audio"], ["context"]):
            raise ValueError(f"the cost is per second of audio or of context, not {kind[0]!r}")
        return cls(float(fixed), float(per_second), by_context=kind == ["context"])


class InProcessModel:
    """The `AsrBackend` protocol over a `BatchTranscriber`: calls wait until `run` answers
    all of them in one batch (one execution), timing it (`seconds`) and charging the
    virtual clock for it (`charged`: that time, or `cost`'s)."""

    def __init__(
        self,
        transcriber: BatchTranscriber,
        low_latency: bool,
        drafts: bool = True,
        cost: CostModel | None = None,
    ) -> None:
        self.transcriber = transcriber
        # False: full 30 s windows for the steps and the end read, as before LOW_LATENCY
        self.low_latency = low_latency
        self.drafts = drafts  # False: steps decode without their previous step's draft
        self.cost = cost
        self.seconds = 0.0
        self.charged = 0.0
        self.executions = 0
        # each waiting request with its answer and the call it comes from
        self._waiting: list[tuple[TranscriptionRequest, asyncio.Future[WindowResult], object]] = []

    @staticmethod
    def call(coroutine: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run `coroutine` (a step, an end read) as a task whose model requests are known to
        be its own, even from the tasks it starts: an end read has two windows in flight."""
        context = contextvars.copy_context()
        context.run(_CALLER.set, coroutine)
        return asyncio.get_running_loop().create_task(coroutine, context=context)

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, priority: Priority
    ) -> WindowResult:
        request = TranscriptionRequest(
            audio=audio.astype(np.float32),
            language=options.language or "en",
            prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            low_latency=options.low_latency and self.low_latency,
            short_context=options.short_context and self.low_latency,
            # as the model's DRAFT input carries it
            draft=parse_draft(draft_json(options.draft), self.transcriber.text_tokens)
            if self.drafts
            else (),
        )
        answer: asyncio.Future[WindowResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer, _CALLER.get(None)))
        return await answer

    def run(self) -> None:
        """Answer every waiting call in one batch (one execution), adding its time to
        `seconds`."""
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        started = time.perf_counter()
        results = self.transcriber.transcribe([request for request, _, _ in batch])
        spent = time.perf_counter() - started
        self.seconds += spent
        if self.cost is not None:
            spent = self.cost.of(sum(self._cost_seconds(request) for request, _, _ in batch))
        self.charged += spent
        self.executions += 1
        for (_, answer, _), result in zip(batch, results, strict=True):
            # through JSON, as the segments travel from Triton (numpy floats become floats)
            segments = json.loads(json.dumps(result.segments, default=float))
            answer.set_result(
                WindowResult(result.text, result.language, tuple(map(Segment.from_json, segments)))
            )

    def _cost_seconds(self, request: TranscriptionRequest) -> float:
        """The seconds of a request that the cost model charges: its audio, or its encoder
        context."""
        if self.cost is not None and self.cost.by_context:
            frames = encoder_frames(request, self.transcriber.low_latency_short_context)
            return frames / FRAMES_PER_SECOND
        return request.audio.size / SAMPLE_RATE

    async def answer_all(self, calls: Sequence[asyncio.Task[Any]]) -> None:
        """Run batches until every one of `calls` (started by `call`) is done: each batch
        once all the calls still running wait for the model (as the steps of one beat reach
        Triton together)."""
        while not all(call.done() for call in calls):
            await asyncio.sleep(0)  # let the calls run up to their model call or their end
            running = {id(call.get_coro()) for call in calls if not call.done()}
            if running == {id(caller) for _, _, caller in self._waiting}:
                self.run()

    async def is_ready(self) -> bool:
        return True


@dataclass
class Replay:
    texts: list[str]  # one per stream
    model_seconds: float
    executions: int
    word_latencies: list[float]  # every stream's committed words

    @property
    def text(self) -> str:
        return self.texts[0]


@dataclass
class _Stream:
    session: StreamSession
    decoder: FrameDecoder
    delay: float  # when its audio starts, virtual seconds
    asks_at: float  # when it next asks the clock for a beat (its audio's start at first)
    step_s: float | None = None  # its last step's time, recorded on the clock when it asks
    beat: float | None = None  # the beat it waits for, once it has asked
    last_beat: float | None = None  # the beat it last woke on
    fed: int = 0  # samples appended so far
    texts: list[str] = field(default_factory=list)

    def feed(self, audio: np.ndarray, now: float) -> None:
        """Append the whole frames that have arrived by `now`."""
        arrived = int((now - self.delay) * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES
        upto = min(audio.size, max(arrived, 0))
        if upto > self.fed:
            self.session.append(self.decoder.decode(audio[self.fed : upto].tobytes()))
            self.fed = upto

    def collect(self, messages: list[dict[str, Any]]) -> None:
        self.texts.extend(m["text"] for m in messages if m["type"] == "final")


def newly_committed(session: StreamSession, before: int) -> list[Word]:
    """The words committed since `before` had been in all (the agreement keeps the latest)."""
    new = session.agreement.committed_count - before
    return list(session.agreement.committed)[-new:] if new else []


async def replay(
    audio: np.ndarray,
    model: InProcessModel,
    beat_s: float,
    *,
    max_beat_s: float | None = None,
    streams: int = 1,
) -> Replay:
    """Stream `audio` `streams` times on one clock, as `ws_stream` steps them: on each beat
    every stream with enough new audio steps, their model calls answered in one batch; each
    stream then records its step's time and waits for the next beat."""
    clock = StepClock(beat_s, max_beat_s or beat_s)
    config = StreamConfig(encoding="f32le")
    replayed = [
        _Stream(
            StreamSession(model, config, min_new_audio_s=beat_s / 2),
            FrameDecoder(config),
            delay=delay,
            asks_at=delay,
        )
        for delay in (index * STARTS_SPREAD_SECONDS / streams for index in range(streams))
    ]
    latencies: list[float] = []
    model_free_at = 0.0
    audio_end = replayed[-1].delay + audio.size / SAMPLE_RATE
    while True:
        # the clock answers in the order the streams ask, as the service's event loop does
        asking = [stream for stream in replayed if stream.beat is None]
        first_beat = min((s.beat for s in replayed if s.beat is not None), default=None)
        if asking:
            stream = min(asking, key=lambda s: s.asks_at)
            if first_beat is None or stream.asks_at < first_beat:
                if stream.step_s is not None:
                    clock.record(stream.step_s)
                stream.beat = clock.next_beat(stream.asks_at, stream.last_beat)
                continue
        assert first_beat is not None
        now = first_beat
        if now >= audio_end:
            break
        on_beat = [stream for stream in replayed if stream.beat == now]
        for stream in on_beat:
            stream.feed(audio, now)
        due = [stream for stream in on_beat if stream.session.step_due]
        committed = [stream.session.agreement.committed_count for stream in due]
        steps = [model.call(stream.session.step()) for stream in due]
        before = model.charged
        await model.answer_all(steps)
        # one model instance: a batch waits for the one before it to finish
        done_at = max(now, model_free_at) + model.charged - before
        model_free_at = done_at
        for stream, step, count in zip(due, steps, committed, strict=True):
            stream.collect(step.result())
            stream.step_s = done_at - now  # as the service times it: queueing included
            words = newly_committed(stream.session, count)
            latencies += [done_at - stream.delay - word.end for word in words]
        for stream in on_beat:
            stream.beat, stream.last_beat = None, now
            stream.asks_at = done_at if stream in due else now
    for stream in replayed:
        stream.feed(audio, audio_end)
    ends = [model.call(stream.session.finish(stream.decoder.flush())) for stream in replayed]
    await model.answer_all(ends)
    for stream, end in zip(replayed, ends, strict=True):
        stream.collect(end.result())
    return Replay(
        ["".join(stream.texts) for stream in replayed],
        model.seconds,
        model.executions,
        latencies,
    )


def in_process_model(
    threads: int,
    *,
    low_latency: bool = True,
    bfloat16: bool | None = None,
    drafts: bool = True,
    cost: CostModel | None = None,
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
    return InProcessModel(transcriber, low_latency=low_latency, drafts=drafts, cost=cost)


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
    parser.add_argument(
        "--beat", type=float, default=3.0, help="the beat's period, s (its least, with --max-beat)"
    )
    parser.add_argument(
        "--max-beat",
        type=float,
        default=None,
        help="the longest period the beat may stretch to under load, s (default: --beat)",
    )
    parser.add_argument("--streams", type=int, default=1, help="streams of the plan at once")
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
    parser.add_argument(
        "--drafts",
        choices=["on", "off"],
        default="on",
        help="steps send their previous step's segments as a draft (DRAFT)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cost",
        type=CostModel.parse,
        default=None,
        metavar="FIXED,PER_S[,context]",
        help="charge each execution FIXED + PER_S x its batch's audio seconds (with "
        "',context': its encoder context's) on the virtual clock instead of the time it "
        "took: runs repeat exactly (2 AVX2 cores, float32: about 0.12,0.035 or 0,0.0156,context)",
    )
    args = parser.parse_args(argv)

    audio, text = plan_audio(args.plan)
    audio = np.concatenate([np.zeros(round(args.lead * SAMPLE_RATE), np.float32), audio])
    duration = audio.size / SAMPLE_RATE
    bfloat16 = cpu_computes_bfloat16() if args.bfloat16 == "auto" else args.bfloat16 == "true"
    model = in_process_model(
        args.threads,
        low_latency=args.context == "low-latency",
        bfloat16=bfloat16,
        drafts=args.drafts == "on",
        cost=args.cost,
    )
    result = asyncio.run(
        replay(audio, model, args.beat, max_beat_s=args.max_beat, streams=args.streams)
    )
    quantiles = statistics.quantiles(result.word_latencies, n=20)
    wers = [100 * word_error_rate(text, hypothesis) for hypothesis in result.texts]
    beat = f"{args.beat:g}-{args.max_beat:g} s" if args.max_beat else f"{args.beat:g} s"
    print(
        f"{args.plan} ({duration:.1f} s with a {args.lead:g} s lead), {args.streams} "
        f"stream(s), {beat} beat, context {args.context}, bfloat16 {bfloat16}, "
        f"drafts {args.drafts}: "
        f"WER {statistics.mean(wers):.1f} % (max {max(wers):.1f} %), "
        f"model {result.model_seconds:.1f} s in {result.executions} executions "
        f"({result.model_seconds / duration:.3f} s per audio s), "
        f"word latency p50 {statistics.median(result.word_latencies):.2f} s, "
        f"p95 {quantiles[-1]:.2f} s"
    )
    print(result.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
