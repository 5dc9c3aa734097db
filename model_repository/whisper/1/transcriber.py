"""Batched Whisper decoding of independent audio windows (at most 30 s each).

This module is what the Triton model runs; it imports without Triton so it is tested
directly. One call decodes every request of a Triton batch together:

1. log-Mel spectrograms of all requests are stacked and the encoder runs once on the batch;
2. requests are grouped by what their decoder prompt must be (language, task, prompt,
   temperature) and each group runs one batched decode (`decoder.WhisperDecoder`: features of
   different lengths padded, each row's cross-attention limited to its own; a preallocated
   key/value cache, finished rows dropped, CUDA graphs on a GPU);
3. a request whose result looks like a failure (too repetitive, too unlikely) is decoded again
   at the next temperature, together with the other failures of its group, as openai-whisper's
   `transcribe()` does per window (but when every temperature fails, the likeliest decode is
   kept, not the last; sampling is seeded by the request's audio); except a low-latency
   request (below).
4. word timestamps, for the requests that ask for them, by openai-whisper's
   `add_word_timestamps`, the decoder pass each needs run once for all of them
   (`WhisperDecoder.alignment_passes`); the audio's cross-attention keys and values are
   computed once per request and shared by all its decodes and that pass.

Each request gets the result it would get if decoded alone: the encoder sees every window
padded to 30 s either way, and greedy decoding of one row does not depend on the others.

A `low_latency` request (live streams) trades a little of that for speed: on a CPU the
encoder sees its audio with 5–10 s of padding instead of a full 30 s window (a 4 s buffer
costs a third of the encoder work), in bfloat16 where the CPU computes it natively. Requests
are encoded in groups of equal context length and decoded together, each row's
cross-attention limited to its own audio positions, so this too does not depend on what else
is in the batch. Nor is a low-latency request decoded again when its result fails the
checks: every request of the batch would wait for the retries (measured under 4 live streams:
7.3-7.9 s executions instead of 0.5-1 s, each with one retried 4 s buffer), whereas a stream
gets a fresh hypothesis on its next step anyway; the result's `avg_logprob` and
`compression_ratio` say that it failed.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import whisper
from decoder import Decoded, DecodePrompt, WhisperDecoder
from whisper.audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from whisper.model import AudioEncoder, Whisper
from whisper.timing import add_word_timestamps, dtw
from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE, Tokenizer, get_tokenizer

MAX_AUDIO_SECONDS = N_SAMPLES / SAMPLE_RATE  # 30 s: one encoder window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # log-Mel frames
# Low-latency context: the audio plus at least this much padding (Whisper was trained on
# audio followed by silence; encoding the audio alone diverged by up to 21 % WER) ...
LOW_LATENCY_MIN_PADDING_SECONDS = 5.0
# ... rounded up to a multiple of this (each length is an encoder pass of its own; the decode
# is shared). A batch of 8 stream buffers: 2.07 s with 5 s steps, 2.20 s with 10 s steps.
LOW_LATENCY_CONTEXT_STEP_SECONDS = 5.0
# Resampling can overshoot full scale slightly; far beyond it the caller sent the wrong
# scale (typically int16 values as float), which silently ruins the log-Mel features.
MAX_ABS_SAMPLE = 1.5
TASKS = ("transcribe", "translate")


class InvalidRequest(ValueError):
    """A request that cannot be decoded; it fails alone, the batch goes on."""


@dataclass(frozen=True)
class DecodeThresholds:
    """When to retry a window at a higher temperature, and when it is silence.

    The defaults are openai-whisper's `transcribe()` defaults.
    """

    compression_ratio: float = 2.4  # above: repetitive output, retry
    logprob: float = -1.0  # average log-probability below: unlikely output, retry
    no_speech: float = 0.6  # no-speech probability above (with low logprob): silence
    # Loudest 25 ms frame below this: no signal at all, not decoded (Whisper would write
    # "you" on digital silence, confidently enough to pass the two checks above).
    silence_dbfs: float = -50.0
    temperature_step: float = 0.2  # fallback schedule t, t+step, ... up to 1.0


@dataclass(frozen=True)
class TranscriptionRequest:
    audio: np.ndarray  # float32 mono samples at 16 kHz in [-1, 1], at most 30 s
    language: str | None = None  # ISO code; None detects it (multilingual models)
    task: str = "transcribe"
    prompt: str | None = None  # previous text, names, jargon
    temperature: float = 0.0  # first temperature of the fallback schedule
    word_timestamps: bool = False
    low_latency: bool = False  # shorter context, decoded once (see the module docstring)


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
    low_latency: bool = False,
) -> TranscriptionRequest:
    """Validate raw inputs into a request, raising `InvalidRequest` with a clear message."""
    task = task or "transcribe"
    if task not in TASKS:
        raise InvalidRequest(f"TASK must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "translate" and not multilingual:
        raise InvalidRequest("TASK 'translate' needs a multilingual model; this one is English-only")
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
        low_latency=bool(low_latency),
    )


def encoder_frames(request: TranscriptionRequest, short_context: bool = True) -> int:
    """How many log-Mel frames the encoder sees for a request: a full 30 s window, or for a
    low-latency request (with `short_context`) its audio and some padding. Language detection
    needs the full window (openai-whisper's detector runs on it), so a request without a
    language gets it."""
    if not (request.low_latency and short_context) or request.language is None:
        return N_FRAMES
    step = LOW_LATENCY_CONTEXT_STEP_SECONDS
    padded = request.audio.size / SAMPLE_RATE + LOW_LATENCY_MIN_PADDING_SECONDS
    seconds = step * math.ceil(padded / step)
    return min(int(seconds * FRAMES_PER_SECOND), N_FRAMES)


def encode(encoder: AudioEncoder, mels: torch.Tensor) -> torch.Tensor:
    """`AudioEncoder.forward` for any context up to 30 s: the positional embedding is cut to
    the input's length (openai-whisper's own forward accepts only full 30 s windows)."""
    x = torch.nn.functional.gelu(encoder.conv1(mels))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = (x + encoder.positional_embedding[: x.shape[1]]).to(x.dtype)
    for block in encoder.blocks:
        x = block(x)
    return encoder.ln_post(x)


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX): without them torch
    emulates bfloat16, slower than float32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def audio_seed(audio: np.ndarray) -> int:
    """A seed for sampling that depends only on the audio."""
    return zlib.crc32(np.ascontiguousarray(audio).view(np.uint8))


def peak_frame_dbfs(audio: np.ndarray, frame: int = SAMPLE_RATE // 40) -> float:
    """Level of the loudest 25 ms frame, in dB relative to full scale."""
    usable = audio[: audio.size // frame * frame].reshape(-1, frame) if audio.size >= frame else audio[None, :]
    rms = float(np.sqrt(np.max(np.mean(np.square(usable, dtype=np.float64), axis=1))))
    return 20.0 * math.log10(max(rms, 1e-10))


class TimedText(NamedTuple):
    start: float
    end: float
    tokens: list[int]
    complete: bool  # closed by a timestamp; False: the decode stopped inside it


def split_segments(tokens: Sequence[int], tokenizer: Tokenizer, duration: float) -> list[TimedText]:
    """Cut a decoded token sequence at its timestamp tokens into timed text.

    Text after the last timestamp (the decode stopped mid-sentence) becomes a final segment
    that ends with the audio, marked incomplete, instead of being dropped as `transcribe()`
    does before seeking to that timestamp: the caller decides whether to read it again.
    """
    time_per_token = 2 * HOP_LENGTH / SAMPLE_RATE  # 0.02 s: one encoder frame
    segments: list[TimedText] = []
    start, text_tokens = 0.0, []
    for token in tokens:
        if token >= tokenizer.timestamp_begin:
            time = min((token - tokenizer.timestamp_begin) * time_per_token, duration)
            if text_tokens:
                segments.append(TimedText(start, max(time, start), text_tokens, True))
                text_tokens = []
            start = time
        elif token < tokenizer.eot:
            text_tokens.append(token)
    if text_tokens:
        segments.append(TimedText(start, max(duration, start), text_tokens, False))
    return segments


class BatchTranscriber:
    """Decodes a batch of independent windows with one Whisper model."""

    def __init__(
        self,
        model: Whisper,
        *,
        fp16: bool,
        thresholds: DecodeThresholds = DecodeThresholds(),
        max_encoder_batch: int = 16,
        low_latency_bfloat16: bool = False,
        low_latency_short_context: bool = True,
        cuda_graphs: bool = True,
    ) -> None:
        self.model = model
        self.fp16 = fp16
        self.decoder = WhisperDecoder(model, cuda_graphs=cuda_graphs)
        # On a CPU the encoder's arithmetic dominates and a shorter context pays; on a GPU the
        # decoder's per-token Python loop does (measured on an H200 while each context length
        # was a decode loop of its own: 16 streams on a 1 s beat, p95 2.9 s with full windows,
        # 10.9 s with short contexts)
        self.low_latency_short_context = low_latency_short_context
        # low-latency requests encode in bfloat16 (on a CPU only: CUDA runs fp16 throughout)
        self.low_latency_bfloat16 = low_latency_bfloat16 and model.device.type == "cpu"
        self.thresholds = thresholds
        self.max_encoder_batch = max_encoder_batch
        self.multilingual = model.is_multilingual

    def warm_up(self) -> None:
        """Do once at load what the first requests would otherwise wait for: numba compiles
        the word-timing DTW (seconds), torch sets up its kernels."""
        dtw(torch.zeros(4, 4, dtype=torch.float32))
        tone = 0.1 * np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 440 / SAMPLE_RATE)
        self.transcribe([TranscriptionRequest(audio=tone.astype(np.float32), language="en")])

    @property
    def device(self) -> torch.device:
        return self.model.device

    def tokenizer(self, language: str | None, task: str) -> Tokenizer:
        return get_tokenizer(
            self.multilingual,
            num_languages=self.model.num_languages,
            language=language,
            task=task,
        )

    def transcribe(self, requests: Sequence[TranscriptionRequest]) -> list[TranscriptionResult]:
        results = [
            TranscriptionResult(text="", language=request.language or "")
            if peak_frame_dbfs(request.audio) < self.thresholds.silence_dbfs
            else None
            for request in requests
        ]
        audible = [index for index, result in enumerate(results) if result is None]
        for index, result in zip(audible, self._transcribe_audible([requests[i] for i in audible])):
            results[index] = result
        return results  # type: ignore[return-value]

    def _transcribe_audible(
        self, requests: Sequence[TranscriptionRequest]
    ) -> list[TranscriptionResult]:
        if not requests:
            return []
        with torch.inference_mode():
            frames = [
                encoder_frames(request, self.low_latency_short_context) for request in requests
            ]
            mels = [self._mel(request.audio, count) for request, count in zip(requests, frames)]
            features = self._encode(requests, mels)
            languages = self._languages(requests, features)
            contexts = self.decoder.audio_contexts(features)
            groups: dict[_DecodeKey, list[int]] = defaultdict(list)
            for index, (request, language) in enumerate(zip(requests, languages)):
                key = _DecodeKey(
                    language,
                    request.task,
                    request.prompt,
                    request.temperature,
                    fallback=not request.low_latency,
                )
                groups[key].append(index)
            decoded: list[Decoded | None] = [None] * len(requests)
            for key, indices in groups.items():
                group = [contexts[index] for index in indices]
                audios = [requests[index].audio for index in indices]
                for index, result in zip(indices, self._decode_with_fallback(group, audios, key)):
                    decoded[index] = result
            segments = [self._segments(r, d) for r, d in zip(requests, decoded)]  # type: ignore[arg-type]
            self._time_words(requests, languages, contexts, mels, segments)
        results = []
        for result, timed in zip(decoded, segments):
            for segment in timed:
                del segment["seek"]
            text = "".join(segment["text"] for segment in timed).strip()
            results.append(TranscriptionResult(text=text, language=result.language, segments=timed))
        return results

    def _mel(self, audio: np.ndarray, frames: int) -> torch.Tensor:
        # As transcribe() does: pad 30 s of silence, then cut one window (of `frames`).
        samples = torch.from_numpy(audio).to(self.device)
        mel = whisper.log_mel_spectrogram(samples, self.model.dims.n_mels, padding=N_SAMPLES)
        mel = whisper.pad_or_trim(mel[:, :frames], frames)
        return mel.half() if self.fp16 else mel

    def _encode(
        self, requests: Sequence[TranscriptionRequest], mels: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Audio features of every request, encoded in batches of equal length and precision."""
        groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
        for index, (request, mel) in enumerate(zip(requests, mels)):
            groups[mel.shape[-1], request.low_latency and self.low_latency_bfloat16].append(index)
        features: list[torch.Tensor] = [None] * len(mels)  # type: ignore[list-item]
        for (_, bfloat16), indices in groups.items():
            for start in range(0, len(indices), self.max_encoder_batch):
                chunk = indices[start : start + self.max_encoder_batch]
                batch = torch.stack([mels[index] for index in chunk])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                    encoded = encode(self.model.encoder, batch)
                for index, row in zip(chunk, encoded.to(batch.dtype)):
                    features[index] = row
        return features

    def _languages(
        self, requests: Sequence[TranscriptionRequest], features: Sequence[torch.Tensor]
    ) -> list[str]:
        # (`encoder_frames` gives these full windows, which the detector needs)
        unknown = [i for i, request in enumerate(requests) if request.language is None]
        languages = [request.language or "" for request in requests]
        if unknown:
            _, probabilities = self.model.detect_language(
                torch.stack([features[i] for i in unknown]), self.tokenizer(None, "transcribe")
            )
            for index, probs in zip(unknown, probabilities):
                languages[index] = max(probs, key=probs.get)
        return languages

    def _temperatures(self, first: float) -> list[float]:
        step = self.thresholds.temperature_step
        count = round((1.0 - first) / step) + 1 if first < 1.0 else 1
        return [round(first + i * step, 6) for i in range(max(count, 1))]

    def _needs_fallback(self, result: Decoded) -> bool:
        limits = self.thresholds
        if result.no_speech_prob > limits.no_speech and result.avg_logprob < limits.logprob:
            return False  # silence: a hotter decode would only invent words
        return result.compression_ratio > limits.compression_ratio or result.avg_logprob < limits.logprob

    def _decode_with_fallback(
        self, group: Sequence[torch.Tensor], audios: Sequence[np.ndarray], key: _DecodeKey
    ) -> list[Decoded]:
        """Each row decoded at the key's temperature, then at the next ones while it fails the
        checks; sampling seeded by the row's audio (hashed only once a sample is drawn)."""
        tokenizer = self.tokenizer(key.language, key.task)
        tried: list[list[Decoded]] = [[] for _ in group]
        pending = list(range(len(group)))
        temperatures = self._temperatures(key.temperature) if key.fallback else [key.temperature]
        for temperature in temperatures:
            prompt = DecodePrompt.of(
                tokenizer, key.language, self.model.dims.n_text_ctx, key.prompt, temperature
            )
            decoded = self.decoder.decode(
                [group[i] for i in pending],
                prompt,
                [audio_seed(audios[i]) for i in pending] if temperature > 0 else [],
            )
            for index, result in zip(pending, decoded):
                tried[index].append(result)
            pending = [index for index in pending if self._needs_fallback(tried[index][-1])]
            if not pending:
                break
        return [self._best(results) for results in tried]

    def _best(self, tried: Sequence[Decoded]) -> Decoded:
        """The last decode if it passed the checks; if none did, the likeliest of those that
        are not too repetitive (as faster-whisper chooses; `transcribe()` keeps the last, a
        sample at temperature 1.0: on babble, invented sentences at -3 to -4 log-probability
        where the greedy decode was closer)."""
        if not self._needs_fallback(tried[-1]):
            return tried[-1]
        limit = self.thresholds.compression_ratio
        return max(tried, key=lambda r: (r.compression_ratio <= limit, r.avg_logprob))

    def _is_silence(self, result: Decoded) -> bool:
        # transcribe()'s rule: skip a window the model thinks is not speech, unless it is
        # confident in the text anyway.
        limits = self.thresholds
        return result.no_speech_prob > limits.no_speech and result.avg_logprob <= limits.logprob

    def _segments(self, request: TranscriptionRequest, decoded: Decoded) -> list[dict[str, Any]]:
        """The decode cut at its timestamps, as `transcribe()`'s segments; none for silence."""
        if self._is_silence(decoded):
            return []
        tokenizer = self.tokenizer(decoded.language, request.task)
        duration = request.audio.size / SAMPLE_RATE
        return [
            {
                "id": index,
                "seek": 0,
                "start": round(timed.start, 3),
                "end": round(timed.end, 3),
                "text": tokenizer.decode(timed.tokens),
                "tokens": timed.tokens,
                "temperature": decoded.temperature,
                "avg_logprob": decoded.avg_logprob,
                "compression_ratio": decoded.compression_ratio,
                "no_speech_prob": decoded.no_speech_prob,
                "complete": timed.complete,
            }
            for index, timed in enumerate(split_segments(decoded.tokens, tokenizer, duration))
        ]

    def _time_words(
        self,
        requests: Sequence[TranscriptionRequest],
        languages: Sequence[str],
        contexts: Sequence[torch.Tensor],
        mels: Sequence[torch.Tensor],
        segments: Sequence[list[dict[str, Any]]],
    ) -> None:
        """Word timestamps for the requests that ask for them, as `transcribe()` adds them
        (`whisper.timing.add_word_timestamps`), with the decoder pass each needs run for all
        of them at once."""
        wanted = [i for i, request in enumerate(requests) if request.word_timestamps and segments[i]]
        tokenizers = {i: self.tokenizer(languages[i], requests[i].task) for i in wanted}
        texts = [
            [*tokenizers[i].sot_sequence, tokenizers[i].no_timestamps,
             *(token for segment in segments[i] for token in segment["tokens"]), tokenizers[i].eot]
            for i in wanted
        ]
        passes = self.decoder.alignment_passes([contexts[i] for i in wanted], texts)
        for index, alignment in zip(wanted, passes):
            add_word_timestamps(
                segments=segments[index],
                model=alignment,  # type: ignore[arg-type]
                tokenizer=tokenizers[index],
                mel=mels[index],
                num_frames=math.ceil(requests[index].audio.size / HOP_LENGTH),
                last_speech_timestamp=0.0,
            )
