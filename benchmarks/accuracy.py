"""Accuracy of the service against openai-whisper's `transcribe()` on the same weights, on
audio unlike the test clips: continuous speech with short pauses (where file mode used to lose
whole windows), a conversation with long pauses, real speech joined without pauses, and
speech in steady noise, babble and music at 10, 5 and 0 dB SNR (`benchmarks.speech` builds
them all, deterministically).

Each condition is uploaded twice (the text must be the same both times); `transcribe()` runs
once (it samples from torch's generator when it falls back, so it may differ between runs);
a live stream of the same audio is replayed on the model in this process
(`benchmarks.replay`, the gateway's own `StreamSession` on a virtual clock) to compare the
two modes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from benchmarks import peers, replay, service, speech
from benchmarks.audio import HARVARD, JFK, Item, clip
from benchmarks.report import TMP_DIR, log, spread
from benchmarks.stack import Stack
from gateway.modes.audio import SAMPLE_RATE
from testsupport.wer import word_error_rate

FILE_RUNS = 2
STREAM_BEAT_S = 3.0


@dataclass(frozen=True)
class Condition:
    name: str
    plan: str | None = None  # a `benchmarks.speech` plan; None: a shared clip
    noise: str | None = None
    snr_db: float | None = None
    stream: bool = False  # also replay it as a live stream


CONDITIONS = (
    Condition(JFK),
    Condition(HARVARD),
    Condition("continuous, 0.3 s pauses", "continuous-0.3"),
    Condition("continuous, 0.5 s pauses", "continuous-0.5"),
    Condition("real speech, 0.3 s pauses", "real-continuous"),
    Condition("conversation, 2-4 s pauses", "conversation"),
    # the clip: 8 sentences, 4 s pauses (69 words: one word is 1.4 points)
    Condition("sentences, 4 s pauses", "sparse-4s", stream=True),
    *(
        Condition(f"sentences, steady noise {snr:g} dB", "sparse-4s", "steady", snr, stream=True)
        for snr in (10, 5, 0)
    ),
    Condition("sentences, babble 5 dB", "sparse-4s", "babble", 5, stream=True),
    Condition("sentences, music 5 dB", "sparse-4s", "music", 5, stream=True),
    # the same noises over 600 words, where a difference of a few points means something
    *(
        Condition(f"conversation, {kind} {snr:g} dB", "conversation", kind, snr)
        for kind, snr in (("steady", 10), ("steady", 5), ("steady", 0), ("babble", 5), ("music", 5))
    ),
)
QUICK = (CONDITIONS[0], CONDITIONS[2], CONDITIONS[8])
# `make bench`'s default: each kind of speech once, one noise of each kind over many words
DEFAULT = tuple(
    condition
    for condition in CONDITIONS
    if condition.name
    in (
        JFK,
        "continuous, 0.5 s pauses",
        "real speech, 0.3 s pauses",
        "conversation, 2-4 s pauses",
        "sentences, 4 s pauses",
        "sentences, steady noise 5 dB",
        "conversation, steady 5 dB",
        "conversation, babble 5 dB",
    )
)


def item_of(condition: Condition) -> Item:
    """The condition's audio as a file to upload, and its reference text."""
    if condition.plan is None:
        return clip(condition.name)
    built = (
        speech.noisy(condition.plan, condition.noise, condition.snr_db)
        if condition.noise
        else speech.build(speech.PLANS[condition.plan])
    )
    noise = f"-{condition.noise}-{condition.snr_db:g}db" if condition.noise else ""
    stem = condition.plan + noise
    path = TMP_DIR / "accuracy" / f"{stem}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    speech.write_audio(path, built.audio)
    return Item(condition.name, path, built.text)


async def accuracy(stack: Stack, conditions: tuple[Condition, ...], threads: int) -> list[dict]:
    log("accuracy: loading openai-whisper and the in-process model for stream replays")
    reference_engine = peers.OpenAIWhisper(threads)
    stream_model = replay.in_process_model(threads)
    rows = []
    for condition in conditions:
        item = item_of(condition)
        audio = item.audio
        before = await stack.batch_counts()
        uploads = [await service.upload(stack, item) for _ in range(FILE_RUNS)]
        after = await stack.batch_counts()
        text, wall = await asyncio.to_thread(peers.timed, reference_engine, audio)
        log(
            f"accuracy {condition.name}: uploads {uploads[0][1]:.1f} / {uploads[1][1]:.1f} s, "
            f"transcribe() {wall:.1f} s"
        )
        stream = (
            await replay.replay(audio, stream_model, STREAM_BEAT_S) if condition.stream else None
        )
        rows.append(
            {
                "condition": condition.name,
                "duration_s": audio.size / SAMPLE_RATE,
                "words": len(item.text.split()),
                "wer": word_error_rate(item.text, uploads[0][0]),
                "identical": len({t for t, _ in uploads}) == 1,
                "wall_s": spread([w for _, w in uploads]),
                "inferences": (after[0] - before[0]) // FILE_RUNS,
                "executions": (after[1] - before[1]) // FILE_RUNS,
                "transcribe_wer": word_error_rate(item.text, text),
                "transcribe_wall_s": wall,
                "stream_wer": None if stream is None else word_error_rate(item.text, stream.text),
                "texts": {
                    "service": [t for t, _ in uploads],
                    "transcribe": text,
                    "stream": None if stream is None else stream.text,
                },
            }
        )
        log(
            f"accuracy {condition.name}: hermes {100 * rows[-1]['wer']:.1f} %, transcribe() "
            f"{100 * rows[-1]['transcribe_wer']:.1f} %"
        )
    return rows
