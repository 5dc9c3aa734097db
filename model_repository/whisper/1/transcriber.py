"""Requests to the Whisper model: validated, grouped into batches, answered one by one.

This is what the Triton model (`model.py`) runs on every batch Triton hands it; it imports
without Triton, so it is tested directly. A request (`make_request`) is one window of audio,
at most 30 s, with its options; one that cannot be decoded raises `InvalidRequest` and fails
alone. `BatchTranscriber.transcribe` decodes the requests of a batch together:

1. a window without any signal (`DecodeThresholds.silence_dbfs`) is answered with no text,
   not decoded;
2. the others are encoded in groups of equal context length and precision
   (`encoder_frames`), and the language of those that name none is detected, all at once;
3. they are grouped by what their decoder prompt must be (language, task, prompt, first
   temperature, whether failures are retried) and each group is decoded as one batch, the
   rows that fail the checks retried together at the next temperature;
4. each decode is cut into segments at its timestamps, and the requests that ask for word
   timestamps get them from one decoder pass for all of them;
5. every request gets its own `TranscriptionResult`, in order.

The seconds each of these phases took (`phases.PHASES`) go to `on_phases` after every batch:
the model adds them to Triton's metrics.

The openai-whisper steps these run, adapted to batches, are in `whisper_adaptations.py`;
the decode loop that replaces openai-whisper's is in `decoder.py`.

Each request gets the result it would get if decoded alone: its encoder context depends only
on the request, each row's cross-attention is limited to its own audio positions, greedy
decoding of one row does not depend on the others, and sampling is seeded by the row's
audio.

A `low_latency` request (live streams) trades a little accuracy for speed: on a CPU the
encoder sees its audio with 5-10 s of padding instead of a full 30 s window (a 4 s buffer
costs a third of the encoder work), in bfloat16 where the CPU computes it natively. Nor is a
low-latency request decoded again when its result fails the checks: every request of the
batch would wait for the retries (measured under 4 live streams: 7.3-7.9 s executions
instead of 0.5-1 s, each with one retried 4 s buffer), whereas a stream gets a fresh
hypothesis on its next step anyway; the result's `avg_logprob` and `compression_ratio` say
that it failed. For the same reason its decode stops at `max_tokens_for` its audio's length,
where a decoding loop would otherwise run to the text context's limit, and no segment of it
may start after its audio has ended: tiny.en on a buffer ending in a pause wrote its last
phrase again and again over the padding, a segment each, up to that limit.

A `short_context` request gets the low-latency encoder context alone: decoded in float32, and
retried when it fails the checks, as a file window is. A live stream's read at its end asks
for it: its buffer is what the steps heard with that context (mostly 4-15 s), and with a full
window the read took 1.4-3 times as long and was not more accurate (benchmarks README, "The
read at a stream's end").
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from decoder import Decoded, WhisperDecoder
from phases import PhaseClock
from whisper.audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from whisper.model import Whisper
from whisper.timing import dtw
from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE, Tokenizer, get_tokenizer
from whisper_adaptations import (
    DecodeThresholds,
    TimedText,
    add_word_timestamps_together,
    decode_with_fallback,
    detect_languages,
    encode,
    join_segments,
    log_mel_window,
    temperature_schedule,
    window_segments,
)

MAX_AUDIO_SECONDS = N_SAMPLES / SAMPLE_RATE  # 30 s: one encoder window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # log-Mel frames
# Low-latency context: the audio plus at least this much padding (Whisper was trained on
# audio followed by silence; encoding the audio alone diverged by up to 21 % WER) ...
LOW_LATENCY_MIN_PADDING_SECONDS = 5.0
# ... rounded up to a multiple of this (each length is an encoder pass of its own; the decode
# is shared). A batch of 8 stream buffers: 2.07 s with 5 s steps, 2.20 s with 10 s steps.
LOW_LATENCY_CONTEXT_STEP_SECONDS = 5.0
# A low-latency decode stops after this many tokens a second of its audio, and this many
# more: speech is written in at most ~7 (timestamps included) on the composites' replays, but
# on a buffer ending in a pause tiny.en may repeat its last sentence to the 224-token limit
# (2 decodes of 59 replaying stream-63s on a 1 s beat), holding every stream of its batch
# for 1-2 s on a CPU.
LOW_LATENCY_TOKENS_PER_SECOND = 10
LOW_LATENCY_EXTRA_TOKENS = 10
# Resampling can overshoot full scale slightly; far beyond it the caller sent the wrong
# scale (typically int16 values as float), which silently ruins the log-Mel features.
MAX_ABS_SAMPLE = 1.5
TASKS = ("transcribe", "translate")
DEFAULT_THRESHOLDS = DecodeThresholds()  # openai-whisper's transcribe() defaults


def never_cancelled() -> bool:
    return False


class InvalidRequest(ValueError):
    """A request that cannot be decoded; it fails alone, the batch goes on."""


@dataclass(frozen=True)
class TranscriptionRequest:
    audio: np.ndarray  # float32 mono samples at 16 kHz in [-1, 1], at most 30 s
    language: str | None = None  # ISO code; None detects it (multilingual models)
    task: str = "transcribe"
    prompt: str | None = None  # previous text, names, jargon
    temperature: float = 0.0  # first temperature of the fallback schedule
    word_timestamps: bool = False
    word_times_only: bool = False  # words without their probabilities
    logprobs: bool = False  # each text token's log-probability in the segments
    low_latency: bool = False  # shorter context, decoded once (see the module docstring)
    short_context: bool = False  # the shorter context alone (low_latency implies it)
    # an earlier decode's segments of audio that starts at the same sample (a live stream's
    # previous step): the greedy decode checks them first, and is faster where they hold
    draft: tuple[TimedText, ...] = ()
    # whether the client gave up on it; a decode stops its row when it becomes true
    cancelled: Callable[[], bool] = field(default=never_cancelled, compare=False, repr=False)


@dataclass
class TranscriptionResult:
    text: str
    language: str
    segments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _DecodeKey:
    """Requests that share a key share one decoder prompt and can be decoded as one batch."""

    language: str
    task: str
    prompt: str | None
    temperature: float
    fallback: bool  # retry failures at higher temperatures (not for low-latency requests)


def normalize_language(language: str | None, multilingual: bool) -> str | None:
    """Accept a code ("en") or a name ("English"); None or "" means detect."""
    if not language:
        return None if multilingual else "en"
    code = language.strip().lower()
    code = TO_LANGUAGE_CODE.get(code, code)
    if code not in LANGUAGES:
        raise InvalidRequest(f"LANGUAGE {language!r} is not a language Whisper knows")
    if not multilingual and code != "en":
        raise InvalidRequest(f"LANGUAGE {language!r} requested, but this model is English-only")
    return code


def validate_audio(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 1:
        raise InvalidRequest(f"AUDIO must be one channel of samples, got shape {audio.shape}")
    if audio.size == 0:
        raise InvalidRequest("AUDIO is empty")
    if audio.size > N_SAMPLES:
        raise InvalidRequest(
            f"AUDIO has {audio.size} samples ({audio.size / SAMPLE_RATE:.2f} s); at most "
            f"{N_SAMPLES} ({MAX_AUDIO_SECONDS:.0f} s at {SAMPLE_RATE} Hz) per request"
        )
    if not np.all(np.isfinite(audio)):
        raise InvalidRequest("AUDIO contains NaN or infinite samples")
    peak = float(np.max(np.abs(audio)))
    if peak > MAX_ABS_SAMPLE:
        raise InvalidRequest(
            f"AUDIO samples must lie in [-1, 1], peak is {peak:g} (integer PCM sent as float?)"
        )
    return audio.astype(np.float32, copy=False)


def make_request(
    audio: np.ndarray,
    *,
    multilingual: bool,
    language: str | None = None,
    task: str | None = None,
    prompt: str | None = None,
    temperature: float | None = None,
    word_timestamps: bool = False,
    word_times_only: bool = False,
    logprobs: bool = False,
    low_latency: bool = False,
    short_context: bool = False,
    draft: tuple[TimedText, ...] = (),
    cancelled: Callable[[], bool] = never_cancelled,
) -> TranscriptionRequest:
    """Validate raw inputs into a request, raising `InvalidRequest` with a clear message
    (`draft`: already validated by `parse_draft`)."""
    task = task or "transcribe"
    if task not in TASKS:
        raise InvalidRequest(f"TASK must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "translate" and not multilingual:
        raise InvalidRequest(
            "TASK 'translate' needs a multilingual model; this one is English-only"
        )
    temperature = 0.0 if temperature is None else float(temperature)
    if not (math.isfinite(temperature) and 0.0 <= temperature <= 1.0):
        raise InvalidRequest(f"TEMPERATURE must be between 0 and 1, got {temperature}")
    return TranscriptionRequest(
        audio=validate_audio(audio),
        language=normalize_language(language, multilingual),
        task=task,
        prompt=(prompt or "").strip() or None,
        temperature=temperature,
        word_timestamps=bool(word_timestamps),
        word_times_only=bool(word_times_only),
        logprobs=bool(logprobs),
        low_latency=bool(low_latency),
        short_context=bool(short_context),
        draft=draft,
        cancelled=cancelled,
    )


def parse_draft(draft: str | None, text_tokens: int) -> tuple[TimedText, ...]:
    """DRAFT: a JSON list of segments as SEGMENTS gives them: `tokens`, the decode's times
    (`timestamps`, else `start` and `end`), and `complete` (true when absent); other keys are
    ignored. Each token must be a text token (below `text_tokens`), each time within a
    window. None or empty: no draft."""
    if not draft:
        return ()
    try:
        items = json.loads(draft)
    except ValueError as error:
        raise InvalidRequest(f"DRAFT is not JSON: {error}") from None
    if not isinstance(items, list):
        raise InvalidRequest("DRAFT must be a JSON list of segments")
    segments = []
    for index, item in enumerate(items):
        try:
            start, end = (
                item["timestamps"] if "timestamps" in item else (item["start"], item["end"])
            )
            times = (float(start), float(end))
            tokens = [int(token) for token in item["tokens"]]
            complete = bool(item.get("complete", True))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise InvalidRequest(
                f"DRAFT segment {index} needs its times (start and end) and a list of tokens"
            ) from None
        if not all(0.0 <= time <= MAX_AUDIO_SECONDS for time in times):
            raise InvalidRequest(f"DRAFT segment {index}: times must lie in 0-30 s")
        if not all(0 <= token < text_tokens for token in tokens):
            raise InvalidRequest(f"DRAFT segment {index}: tokens must be text tokens")
        segments.append(TimedText(*times, tokens, complete))
    return tuple(segments)


def encoder_frames(request: TranscriptionRequest, short_context: bool = True) -> int:
    """How many log-Mel frames the encoder sees for a request: a full 30 s window, or for a
    request that asks for a short context (where the model allows it: `short_context`) its
    audio and some padding. Language detection needs the full window (openai-whisper's
    detector runs on it), so a request without a language gets it."""
    asks = request.low_latency or request.short_context
    if not (asks and short_context) or request.language is None:
        return N_FRAMES
    step = LOW_LATENCY_CONTEXT_STEP_SECONDS
    padded = request.audio.size / SAMPLE_RATE + LOW_LATENCY_MIN_PADDING_SECONDS
    seconds = step * math.ceil(padded / step)
    return min(int(seconds * FRAMES_PER_SECOND), N_FRAMES)


def max_tokens_for(request: TranscriptionRequest) -> int:
    """The most tokens a low-latency request's decode may sample (see
    `LOW_LATENCY_TOKENS_PER_SECOND`)."""
    seconds = request.audio.size / SAMPLE_RATE
    return math.ceil(seconds * LOW_LATENCY_TOKENS_PER_SECOND) + LOW_LATENCY_EXTRA_TOKENS


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX): without them torch
    emulates bfloat16, slower than float32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def peak_frame_dbfs(audio: np.ndarray, frame: int = SAMPLE_RATE // 40) -> float:
    """Level of the loudest 25 ms frame, in dB relative to full scale."""
    usable = (
        audio[: audio.size // frame * frame].reshape(-1, frame)
        if audio.size >= frame
        else audio[None, :]
    )
    rms = float(np.sqrt(np.max(np.mean(np.square(usable, dtype=np.float64), axis=1))))
    return 20.0 * math.log10(max(rms, 1e-10))


class BatchTranscriber:
    """Decodes a batch of independent windows with one Whisper model."""

    def __init__(
        self,
        model: Whisper,
        *,
        fp16: bool,
        thresholds: DecodeThresholds = DEFAULT_THRESHOLDS,
        max_encoder_batch: int = 16,
        low_latency_bfloat16: bool = False,
        file_bfloat16: bool = False,
        low_latency_short_context: bool = True,
        cuda_graphs: bool = True,
        on_phases: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        """`on_phases`: told, after each batch, the seconds its phases took."""
        self.model = model
        self.fp16 = fp16
        self.decoder = WhisperDecoder(model, cuda_graphs=cuda_graphs)
        # On a CPU the encoder's arithmetic dominates and a shorter context pays. The model
        # turns it off on a GPU (parameter low_latency_short_context, auto), where the
        # decoder's per-token loop dominates: measured on an H200 when every context length
        # was a decode loop of its own (16 streams on a 1 s beat, p95 2.9 s with full windows,
        # 10.9 s with short contexts); not measured again since all lengths share one loop.
        self.low_latency_short_context = low_latency_short_context
        # low-latency requests and, where the operator asks, the others encode in bfloat16 (on
        # a CPU only: CUDA runs fp16 throughout); the decoder stays float32
        on_cpu = model.device.type == "cpu"
        self.low_latency_bfloat16 = low_latency_bfloat16 and on_cpu
        self.file_bfloat16 = file_bfloat16 and on_cpu
        self.thresholds = thresholds
        self.max_encoder_batch = max_encoder_batch
        self.multilingual = model.is_multilingual
        self.on_phases = on_phases

    def warm_up(self) -> None:
        """Do once at load what the first requests would otherwise wait for: numba compiles
        the word-timing DTW (seconds), torch sets up its kernels."""
        dtw(torch.zeros(4, 4, dtype=torch.float32))
        tone = 0.1 * np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 440 / SAMPLE_RATE)
        on_phases, self.on_phases = self.on_phases, None  # not a request: not counted
        try:
            self.transcribe([TranscriptionRequest(audio=tone.astype(np.float32), language="en")])
        finally:
            self.on_phases = on_phases

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def text_tokens(self) -> int:
        """How many of the vocabulary's tokens are text (the first ones, up to end of text)."""
        return self.tokenizer(None, "transcribe").eot

    def tokenizer(self, language: str | None, task: str) -> Tokenizer:
        return get_tokenizer(
            self.multilingual,
            num_languages=self.model.num_languages,
            language=language,
            task=task,
        )

    def transcribe(self, requests: Sequence[TranscriptionRequest]) -> list[TranscriptionResult]:
        """One result per request, in order."""
        results = [
            TranscriptionResult(text="", language=request.language or "")
            if peak_frame_dbfs(request.audio) < self.thresholds.silence_dbfs
            else None
            for request in requests
        ]
        audible = [index for index, result in enumerate(results) if result is None]
        transcribed = self._transcribe_audible([requests[i] for i in audible])
        for index, result in zip(audible, transcribed, strict=True):
            results[index] = result
        return results  # type: ignore[return-value]

    def _transcribe_audible(
        self, requests: Sequence[TranscriptionRequest]
    ) -> list[TranscriptionResult]:
        if not requests:
            return []
        clock = PhaseClock(self.device)
        with torch.inference_mode():
            with clock.phase("features"):
                frames = [
                    encoder_frames(request, self.low_latency_short_context) for request in requests
                ]
                mels = [
                    log_mel_window(request.audio, count, self.model, fp16=self.fp16)
                    for request, count in zip(requests, frames, strict=True)
                ]
            with clock.phase("encode"):
                features = self._encode(requests, mels)
            with clock.phase("language"):
                languages = self._languages(requests, features)
            with clock.phase("decode"):
                contexts = self.decoder.audio_contexts(features)
                decoded = self._decode_groups(requests, languages, contexts)
            with clock.phase("segments"):
                segments = [
                    window_segments(
                        result,
                        self.tokenizer(result.language, request.task),
                        request.audio.size / SAMPLE_RATE,
                        self.thresholds,
                        logprobs=request.logprobs,
                    )
                    for request, result in zip(requests, decoded, strict=True)
                ]
            with clock.phase("word_timing"):
                self._time_words(requests, languages, contexts, mels, segments)
        if self.on_phases is not None:
            self.on_phases(clock.seconds)
        results = []
        for result, timed in zip(decoded, segments, strict=True):
            for segment in timed:
                del segment["seek"]  # only add_word_timestamps reads it
            text = "".join(segment["text"] for segment in timed).strip()
            results.append(TranscriptionResult(text=text, language=result.language, segments=timed))
        return results

    def _encode(
        self, requests: Sequence[TranscriptionRequest], mels: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Audio features of every request, encoded in batches of equal length and precision."""
        groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
        for index, (request, mel) in enumerate(zip(requests, mels, strict=True)):
            bfloat16 = self.low_latency_bfloat16 if request.low_latency else self.file_bfloat16
            groups[mel.shape[-1], bfloat16].append(index)
        features: list[torch.Tensor] = [None] * len(mels)  # type: ignore[list-item]
        for (_, bfloat16), indices in groups.items():
            for start in range(0, len(indices), self.max_encoder_batch):
                chunk = indices[start : start + self.max_encoder_batch]
                batch = torch.stack([mels[index] for index in chunk])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                    encoded = encode(self.model.encoder, batch)
                for index, row in zip(chunk, encoded.to(batch.dtype), strict=True):
                    features[index] = row
        return features

    def _languages(
        self, requests: Sequence[TranscriptionRequest], features: Sequence[torch.Tensor]
    ) -> list[str]:
        """Each request's language: its own, or detected (`encoder_frames` gives a request
        without one a full window, which the detector needs)."""
        unknown = [i for i, request in enumerate(requests) if request.language is None]
        languages = [request.language or "" for request in requests]
        if unknown:
            detected = detect_languages(
                self.model, [features[i] for i in unknown], self.tokenizer(None, "transcribe")
            )
            for index, language in zip(unknown, detected, strict=True):
                languages[index] = language
        return languages

    def _decode_groups(
        self,
        requests: Sequence[TranscriptionRequest],
        languages: Sequence[str],
        contexts: Sequence[torch.Tensor],
    ) -> list[Decoded]:
        """Every request decoded, each group of requests that share a decoder prompt as one
        batch; a group's failures are retried at higher temperatures unless its requests are
        low-latency."""
        groups: dict[_DecodeKey, list[int]] = defaultdict(list)
        for index, (request, language) in enumerate(zip(requests, languages, strict=True)):
            key = _DecodeKey(
                language,
                request.task,
                request.prompt,
                request.temperature,
                fallback=not request.low_latency,
            )
            groups[key].append(index)
        decoded: list[Decoded] = [None] * len(requests)  # type: ignore[list-item]
        for key, indices in groups.items():
            temperatures = (
                temperature_schedule(key.temperature, self.thresholds.temperature_step)
                if key.fallback
                else [key.temperature]
            )
            tokenizer = self.tokenizer(key.language, key.task)
            results = decode_with_fallback(
                self.decoder,
                tokenizer,
                [contexts[index] for index in indices],
                [requests[index].audio for index in indices],
                language=key.language,
                prompt=key.prompt,
                temperatures=temperatures,
                thresholds=self.thresholds,
                cancelled=[requests[index].cancelled for index in indices],
                # kept for the whole group when one of its requests asks (no second decode)
                token_logprobs=any(requests[index].logprobs for index in indices),
                max_tokens=(
                    () if key.fallback else [max_tokens_for(requests[index]) for index in indices]
                ),
                drafts=[join_segments(requests[index].draft, tokenizer) for index in indices],
                # a low-latency decode is not retried: a loop over the padding after its
                # audio would run to its token limit
                audio_ends=(
                    ()
                    if key.fallback
                    else [requests[index].audio.size / SAMPLE_RATE for index in indices]
                ),
            )
            for index, result in zip(indices, results, strict=True):
                decoded[index] = result
        return decoded

    def _time_words(
        self,
        requests: Sequence[TranscriptionRequest],
        languages: Sequence[str],
        contexts: Sequence[torch.Tensor],
        mels: Sequence[torch.Tensor],
        segments: Sequence[list[dict[str, Any]]],
    ) -> None:
        """Word timestamps, added to the segments of the requests that ask for them and have
        any, all in one pass."""
        wanted = [
            i
            for i, request in enumerate(requests)
            if request.word_timestamps and segments[i] and not request.cancelled()
        ]
        add_word_timestamps_together(
            self.decoder,
            [self.tokenizer(languages[i], requests[i].task) for i in wanted],
            [contexts[i] for i in wanted],
            [mels[i] for i in wanted],
            [segments[i] for i in wanted],
            [requests[i].audio.size for i in wanted],
            # the words' probabilities cost a vocabulary product over every token of the text,
            # most of word timing on a CPU: not for requests that want the times only
            [not requests[i].word_times_only for i in wanted],
        )
