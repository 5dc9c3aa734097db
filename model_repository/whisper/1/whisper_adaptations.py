"""openai-whisper's transcription steps, adapted to a batch of independent windows.

openai-whisper transcribes one recording at a time (`whisper.transcribe.transcribe`): it
encodes a 30 s window, decodes it, retries at higher temperatures, cuts the text into
segments at its timestamps and times its words, then moves on to the next window. The model
here decodes many independent windows together, so each step of that loop is replaced or
wrapped by a function below that runs it for a batch. Each function's docstring names the
openai-whisper function it replaces or wraps (as of openai-whisper 20250625) and why it
differs. The decode loop itself (`whisper.decoding.DecodingTask`) is replaced in
`decoder.py`; how requests are validated and grouped into these batches is in
`transcriber.py`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import whisper
import whisper.timing
from decoder import Decoded, DecodePrompt, WhisperDecoder
from whisper.audio import CHUNK_LENGTH, HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from whisper.model import AudioEncoder, Whisper
from whisper.timing import add_word_timestamps
from whisper.tokenizer import Tokenizer


@dataclass(frozen=True)
class DecodeThresholds:
    """When to retry a window at a higher temperature, and when it is silence.

    The first four are the defaults of `whisper.transcribe.transcribe`'s
    `compression_ratio_threshold`, `logprob_threshold`, `no_speech_threshold` and of the step
    of its `temperature` schedule (0.0, 0.2, ..., 1.0); `silence_dbfs` is ours.
    """

    compression_ratio: float = 2.4  # above: repetitive output, retry
    logprob: float = -1.0  # average log-probability below: unlikely output, retry
    no_speech: float = 0.6  # no-speech probability above (with low logprob): silence
    # Loudest 25 ms frame below this: no signal at all, not decoded (Whisper would write
    # "you" on digital silence, confidently enough to pass the two checks above).
    silence_dbfs: float = -50.0
    temperature_step: float = 0.2  # fallback schedule t, t+step, ... up to 1.0


def encode(encoder: AudioEncoder, mels: torch.Tensor) -> torch.Tensor:
    """Replaces `whisper.model.AudioEncoder.forward`, which asserts that its input is a full
    30 s window (3000 log-Mel frames): the same arithmetic for any context up to 30 s, the
    positional embedding cut to the input's length, so that a low-latency request can be
    encoded with a shorter context (`transcriber.encoder_frames`)."""
    x = torch.nn.functional.gelu(encoder.conv1(mels))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = (x + encoder.positional_embedding[: x.shape[1]]).to(x.dtype)
    for block in encoder.blocks:
        x = block(x)
    return encoder.ln_post(x)


def log_mel_window(audio: np.ndarray, frames: int, model: Whisper, *, fp16: bool) -> torch.Tensor:
    """Replaces how `whisper.transcribe.transcribe` makes a window's log-Mel features: the
    spectrogram of the audio with 30 s of silence appended, as `transcribe` computes it
    (`whisper.audio.log_mel_spectrogram(..., padding=N_SAMPLES)`), cut to its first `frames`
    frames, the window (a request's audio is at most 30 s and starts the window: there is no
    seeking through a longer recording). `transcribe` cuts a window at the end of the audio
    and pads its features with zeros (`whisper.audio.pad_or_trim`); here the frames after
    the audio are those of the appended silence, as for audio padded with silence before its
    features are computed. fp16 on CUDA, as `transcribe` casts windows to the model's
    dtype."""
    samples = torch.from_numpy(audio).to(model.device)
    mel = whisper.log_mel_spectrogram(samples, model.dims.n_mels, padding=N_SAMPLES)
    mel = whisper.pad_or_trim(mel[:, :frames], frames)
    return mel.half() if fp16 else mel


def detect_languages(
    model: Whisper, features: Sequence[torch.Tensor], tokenizer: Tokenizer
) -> list[str]:
    """Wraps `whisper.model.Whisper.detect_language` (`whisper.decoding.detect_language`) as
    `whisper.transcribe.transcribe` uses it (the likeliest language of a window), for all
    windows at once and on their audio features, already encoded for decoding: the detector
    skips its own encoder pass when handed features. They must be of full 30 s windows, the
    only shape it recognises as features (`transcriber.encoder_frames` gives a request
    without a language one)."""
    _, probabilities = model.detect_language(torch.stack(list(features)), tokenizer)
    return [max(probs, key=probs.get) for probs in probabilities]


def temperature_schedule(first: float, step: float) -> list[float]:
    """The temperatures a window is decoded at until one passes the checks: from the
    request's first temperature up to 1.0, as `whisper.transcribe.transcribe`'s default
    `temperature` schedule (0.0, 0.2, ..., 1.0) goes, but starting where the request asks."""
    count = round((1.0 - first) / step) + 1 if first < 1.0 else 1
    return [round(first + i * step, 6) for i in range(max(count, 1))]


def needs_fallback(result: Decoded, thresholds: DecodeThresholds) -> bool:
    """The checks of `decode_with_fallback` inside `whisper.transcribe.transcribe`: a decode
    that is too repetitive or too unlikely is retried, unless it looks like silence."""
    if result.no_speech_prob > thresholds.no_speech and result.avg_logprob < thresholds.logprob:
        return False  # silence: a hotter decode would only invent words
    return (
        result.compression_ratio > thresholds.compression_ratio
        or result.avg_logprob < thresholds.logprob
    )


def best_decode(tried: Sequence[Decoded], thresholds: DecodeThresholds) -> Decoded:
    """Of a window's decodes at rising temperatures, the one to keep: the last if it passed
    the checks; if none did, the likeliest of those that are not too repetitive (as
    faster-whisper chooses). `whisper.transcribe.transcribe` keeps the last, a sample at
    temperature 1.0: on babble, invented sentences at -3 to -4 log-probability where the
    greedy decode was closer."""
    if not needs_fallback(tried[-1], thresholds):
        return tried[-1]
    limit = thresholds.compression_ratio
    return max(tried, key=lambda r: (r.compression_ratio <= limit, r.avg_logprob))


def audio_seed(audio: np.ndarray) -> int:
    """A seed for sampling that depends only on the audio (see `decode_with_fallback`)."""
    return zlib.crc32(np.ascontiguousarray(audio).data)


def decode_with_fallback(
    decoder: WhisperDecoder,
    tokenizer: Tokenizer,
    contexts: Sequence[torch.Tensor],
    audios: Sequence[np.ndarray],
    *,
    language: str,
    prompt: str | None,
    temperatures: Sequence[float],
    thresholds: DecodeThresholds,
    cancelled: Sequence[Callable[[], bool]] = (),
    token_logprobs: bool = False,
    max_tokens: Sequence[int] = (),
    drafts: Sequence[Sequence[int]] = (),
    audio_ends: Sequence[float] = (),
) -> list[Decoded]:
    """Replaces `decode_with_fallback`, the closure inside `whisper.transcribe.transcribe`,
    for a group of windows that share their decoder prompt (`contexts`: their audio, from
    `WhisperDecoder.audio_contexts`). Each window is decoded at the first temperature, then
    those that fail the checks (`needs_fallback`) at the next ones, together, so a batch
    costs one decode per temperature, not one per window and temperature. Unlike upstream:
    sampling is seeded by each window's audio (hashed only once a sample is drawn), so a
    window gets the same text on every run and in every batch (openai-whisper samples from
    torch's global generator), and when every temperature fails the kept decode is
    `best_decode`'s, not the last. A window whose request was cancelled (`cancelled`, one
    per window) is not retried. `token_logprobs`: keep each token's log-probability.
    `max_tokens`: one per window, the most tokens its decode may sample (none: no limit).
    `drafts`: one per window, tokens its greedy decode checks first (`WhisperDecoder.decode`).
    `audio_ends`: one per window, where its audio ends: no segment starts there or later."""
    tried: list[list[Decoded]] = [[] for _ in contexts]
    pending = list(range(len(contexts)))
    for temperature in temperatures:
        decode_prompt = DecodePrompt.of(tokenizer, language, decoder.text_ctx, prompt, temperature)
        decoded = decoder.decode(
            [contexts[i] for i in pending],
            decode_prompt,
            [audio_seed(audios[i]) for i in pending] if temperature > 0 else [],
            [cancelled[i] for i in pending] if cancelled else (),
            token_logprobs=token_logprobs,
            max_tokens=[max_tokens[i] for i in pending] if max_tokens else (),
            drafts=[drafts[i] for i in pending] if drafts else (),
            audio_ends=[audio_ends[i] for i in pending] if audio_ends else (),
        )
        for index, result in zip(pending, decoded, strict=True):
            tried[index].append(result)
        pending = [
            index
            for index in pending
            if needs_fallback(tried[index][-1], thresholds)
            and not (cancelled and cancelled[index]())
        ]
        if not pending:
            break
    return [best_decode(results, thresholds) for results in tried]


def is_silence(result: Decoded, thresholds: DecodeThresholds) -> bool:
    """The no-speech check of `whisper.transcribe.transcribe`, which skips a window the model
    thinks is not speech unless it is confident in the text anyway."""
    return result.no_speech_prob > thresholds.no_speech and result.avg_logprob <= thresholds.logprob


class TimedText(NamedTuple):
    start: float
    end: float
    tokens: list[int]
    complete: bool  # closed by a timestamp; False: the decode stopped inside it
    logprobs: list[float] | None = None  # each of `tokens`' log-probability, when known


def split_segments(
    tokens: Sequence[int],
    tokenizer: Tokenizer,
    duration: float,
    logprobs: Sequence[float] | None = None,
) -> list[TimedText]:
    """Replaces the slicing of a decode at its timestamp tokens in
    `whisper.transcribe.transcribe`: cut a decoded token sequence into timed text.

    Text after the last timestamp (the decode stopped mid-sentence) becomes a final segment
    that ends with the audio, marked incomplete, instead of being dropped as `transcribe`
    does before seeking to that timestamp: there is no next window to seek to here, so the
    caller decides whether to read it again. Timestamps beyond the audio are clamped to its
    end. `logprobs` (one per token) are cut along with the text tokens.
    """
    time_per_token = 2 * HOP_LENGTH / SAMPLE_RATE  # 0.02 s: one encoder frame
    segments: list[TimedText] = []
    start = 0.0
    text_tokens: list[int] = []
    text_logprobs: list[float] = []
    kept = None if logprobs is None else text_logprobs
    for index, token in enumerate(tokens):
        if token >= tokenizer.timestamp_begin:
            time = min((token - tokenizer.timestamp_begin) * time_per_token, duration)
            if text_tokens:
                segments.append(TimedText(start, max(time, start), text_tokens, True, kept))
                text_tokens, text_logprobs = [], []
                kept = None if logprobs is None else text_logprobs
            start = time
        elif token < tokenizer.eot:
            text_tokens.append(token)
            if logprobs is not None:
                text_logprobs.append(logprobs[index])
    if text_tokens:
        segments.append(TimedText(start, max(duration, start), text_tokens, False, kept))
    return segments


def join_segments(segments: Sequence[TimedText], tokenizer: Tokenizer) -> list[int]:
    """The token sequence `split_segments` cut these segments from: each segment's start
    timestamp, its text, and its closing timestamp if it had one (times rounded to the 0.02 s
    a timestamp token stands for, at most 30 s). A decode's draft (`WhisperDecoder.decode`)
    is made this way from the segments of an earlier decode."""
    time_per_token = 2 * HOP_LENGTH / SAMPLE_RATE
    last = tokenizer.timestamp_begin + round(CHUNK_LENGTH / time_per_token)

    def timestamp(seconds: float) -> int:
        return min(tokenizer.timestamp_begin + round(seconds / time_per_token), last)

    tokens: list[int] = []
    for segment in segments:
        tokens += [timestamp(segment.start), *segment.tokens]
        if segment.complete:
            tokens.append(timestamp(segment.end))
    return tokens


def token_logprobs(
    tokens: Sequence[int], logprobs: Sequence[float], tokenizer: Tokenizer
) -> list[dict[str, Any]]:
    """Each text token as OpenAI's `logprobs` items give it: its text, its log-probability
    and its UTF-8 bytes (a character split across tokens is whole only in the bytes)."""
    items = []
    for token, logprob in zip(tokens, logprobs, strict=True):
        raw = tokenizer.encoding.decode_single_token_bytes(token)
        items.append(
            {
                "token": raw.decode("utf-8", errors="replace"),
                "logprob": min(logprob, 0.0),
                "bytes": list(raw),
            }
        )
    return items


def window_segments(
    decoded: Decoded,
    tokenizer: Tokenizer,
    duration: float,
    thresholds: DecodeThresholds,
    logprobs: bool = False,
) -> list[dict[str, Any]]:
    """A window's segments as `new_segment` inside `whisper.transcribe.transcribe` builds
    them (plus `id`, `complete` and `timestamps`; `tokens` without the timestamps), cut by
    `split_segments`; none when the window is silence (`is_silence`). Each has `seek` 0,
    which `add_word_timestamps` reads (the window starts at the audio's start); the caller
    drops it afterwards. With `logprobs` (and a decode that kept them), each also has
    `logprobs`: its tokens as `token_logprobs` gives them."""
    if is_silence(decoded, thresholds):
        return []
    timed_texts = split_segments(
        decoded.tokens, tokenizer, duration, decoded.token_logprobs if logprobs else None
    )
    segments = [
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
            # the decode's own times: word timing moves start and end to the words'
            "timestamps": [round(timed.start, 3), round(timed.end, 3)],
        }
        for index, timed in enumerate(timed_texts)
    ]
    for segment, timed in zip(segments, timed_texts, strict=True):
        if timed.logprobs is not None:
            segment["logprobs"] = token_logprobs(timed.tokens, timed.logprobs, tokenizer)
    return segments


# Compare-exchanges that leave the median of 7 values at index 3 (a sorting network for 7
# inputs without its last exchange; checked on all 2^7 inputs of 0s and 1s, which by the
# 0-1 principle covers every input)
MEDIAN_OF_7 = (
    (0, 6), (2, 3), (4, 5), (0, 2), (1, 4), (3, 6), (0, 1), (2, 5),
    (3, 4), (1, 2), (4, 6), (2, 3), (4, 5), (1, 2), (3, 4),
)  # fmt: skip
_UPSTREAM_MEDIAN_FILTER = whisper.timing.median_filter


def median_filter(x: torch.Tensor, filter_width: int) -> torch.Tensor:
    """Replaces `whisper.timing.median_filter` (installed below: `find_alignment` calls it by
    that name) on a CPU for word timing's width of 7: the same values, to the bit (each is
    one of the inputs, chosen by comparisons), from 15 elementwise min/max pairs over
    shifted views instead of sorting every window of 7. That sort was 40 % of word timing on
    a CPU (6 heads x 110 tokens x 750 frames: 26 ms against 4 ms). On a GPU, other widths and
    shapes: upstream's (its own kernel on CUDA)."""
    if (
        x.device.type != "cpu"
        or filter_width != 7
        or x.ndim != 3
        or x.shape[-1] <= filter_width // 2
    ):
        return _UPSTREAM_MEDIAN_FILTER(x, filter_width)
    frames = x.shape[-1]
    padded = F.pad(x, (3, 3, 0, 0), mode="reflect")  # as upstream pads
    values = [padded[..., shift : shift + frames] for shift in range(7)]
    for low, high in MEDIAN_OF_7:
        values[low], values[high] = (
            torch.minimum(values[low], values[high]),
            torch.maximum(values[low], values[high]),
        )
    return values[3]


whisper.timing.median_filter = median_filter


def add_word_timestamps_together(
    decoder: WhisperDecoder,
    tokenizers: Sequence[Tokenizer],
    contexts: Sequence[torch.Tensor],
    mels: Sequence[torch.Tensor],
    segments: Sequence[list[dict[str, Any]]],
    samples: Sequence[int],
    probabilities: Sequence[bool],
) -> None:
    """Wraps `whisper.timing.add_word_timestamps` (adds `words` to each segment, in place)
    for several windows (`samples`: each window's audio length); the words of a window whose
    `probabilities` is false come without `probability`. Upstream, the
    `whisper.timing.find_alignment` it calls runs the whole model once per window to read the
    cross-attention of the decoded text; here one decoder pass runs for all windows together
    (`WhisperDecoder.alignment_passes`, on the audio contexts already computed for decoding,
    no second encoder pass) and each window's `find_alignment` is handed its row of it
    (`decoder.AlignmentPass` stands in for the model)."""
    texts = [
        [
            *tokenizer.sot_sequence,
            tokenizer.no_timestamps,
            *(token for segment in timed for token in segment["tokens"]),
            tokenizer.eot,
        ]
        for tokenizer, timed in zip(tokenizers, segments, strict=True)
    ]
    passes = decoder.alignment_passes(contexts, texts, probabilities)
    for alignment, tokenizer, mel, timed, count, wanted in zip(
        passes, tokenizers, mels, segments, samples, probabilities, strict=True
    ):
        add_word_timestamps(
            segments=timed,
            model=alignment,
            tokenizer=tokenizer,
            mel=mel,
            num_frames=math.ceil(count / HOP_LENGTH),
            last_speech_timestamp=0.0,
        )
        if not wanted:
            for segment in timed:
                for word in segment.get("words", ()):
                    del word["probability"]
