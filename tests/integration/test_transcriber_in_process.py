"""`BatchTranscriber` with real tiny.en in this process, where Triton's batching is hard to
arrange: low-latency requests of several context lengths decoded in one loop, and the
temperature fallback (file windows retry a decode that fails the checks, as openai-whisper's
`transcribe()` does; live streams' low-latency steps are decoded once)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from checkpoint import load_model
from decoder import WhisperDecoder
from phases import PHASES
from transcriber import (
    BatchTranscriber,
    TranscriptionRequest,
    encoder_frames,
    max_tokens_for,
)
from whisper_adaptations import DecodeThresholds, encode

from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model("tiny.en", torch.device("cpu")).model


@pytest.fixture(scope="module")
def strict_transcriber(model) -> BatchTranscriber:
    """Checks that no decode passes (log-probabilities are never above 0): every window fails."""
    return BatchTranscriber(model, fp16=False, thresholds=DecodeThresholds(logprob=0.0))


@pytest.fixture
def decode_runs(monkeypatch) -> list[tuple[float, list[float]]]:
    """Every decode run from here on: its temperature and each row's avg_logprob."""
    runs: list[tuple[float, list[float]]] = []
    decode = WhisperDecoder.decode

    def counted(decoder, contexts, prompt, *args, **options):
        results = decode(decoder, contexts, prompt, *args, **options)
        runs.append((prompt.temperature, [r.avg_logprob for r in results]))
        return results

    monkeypatch.setattr(WhisperDecoder, "decode", counted)
    return runs


@pytest.fixture
def encoder_batches(monkeypatch) -> list[tuple[int, int, torch.dtype]]:
    """Every encoder batch from here on: its rows, its frames and its features' precision."""
    batches: list[tuple[int, int, torch.dtype]] = []

    def recorded(encoder, mel):
        features = encode(encoder, mel)
        batches.append((mel.shape[0], mel.shape[-1], features.dtype))
        return features

    monkeypatch.setattr("transcriber.encode", recorded)
    return batches


def test_low_latency_requests_of_several_lengths_decode_together_as_alone(model, clips) -> None:
    transcriber = BatchTranscriber(model, fp16=False, low_latency_bfloat16=True)
    jfk, harvard = clips["jfk.flac"].audio, clips["OSR_us_000_0034_8k.wav"].audio
    second = 16_000
    requests = [
        TranscriptionRequest(audio, language="en", word_timestamps=True, low_latency=True)
        for audio in (
            jfk[: 4 * second],
            jfk[: 9 * second],
            harvard[: 13 * second],
            harvard[: 17 * second],
        )
    ]
    assert len({encoder_frames(request) for request in requests}) == 4
    together = transcriber.transcribe(requests)
    alone = [transcriber.transcribe([request])[0] for request in requests]

    def words(result) -> list[tuple[str, float]]:
        return [(w["word"], w["end"]) for s in result.segments for w in s["words"]]

    for batched, single in zip(together, alone, strict=True):
        assert batched.text == single.text
        assert [w for w, _ in words(batched)] == [w for w, _ in words(single)]
        assert [e for _, e in words(batched)] == pytest.approx(
            [e for _, e in words(single)], abs=0.02
        )


def test_words_get_probabilities_unless_asked_for_their_times_only(model, clips) -> None:
    """Word timing skips the vocabulary product for a request that asks for its words' times
    only (a live step, a diarized upload): the same words at the same times, without
    `probability`; otherwise each word has one. In one batch, as a beat's steps and an
    upload's windows may come."""
    transcriber = BatchTranscriber(model, fp16=False, low_latency_bfloat16=False)
    audio = clips["jfk.flac"].audio[: 9 * 16_000]
    step = TranscriptionRequest(audio, language="en", word_timestamps=True, low_latency=True)
    window = replace(step, low_latency=False)
    plain, asking, times_only, full = transcriber.transcribe(
        [replace(step, word_times_only=True), step, replace(window, word_times_only=True), window]
    )

    def words(result) -> list[dict]:
        return [word for segment in result.segments for word in segment["words"]]

    def times(result) -> list[tuple[float, float]]:
        return [(w["start"], w["end"]) for w in words(result)]

    for without, alike in ((plain, asking), (times_only, full)):
        assert words(without) and all("probability" not in word for word in words(without))
        assert [w["word"] for w in words(alike)] == [w["word"] for w in words(without)]
        # times as rows of one batch get them (to 20 ms: DTW on the same attention)
        assert times(alike) == [pytest.approx(time, abs=0.02) for time in times(without)]
    for result in (asking, full):
        assert all(0.0 < word["probability"] <= 1.0 for word in words(result))
    # the probabilities are find_alignment's own: the same whatever the row's neighbours
    (alone,) = transcriber.transcribe([replace(step, logprobs=True)])
    assert [w["probability"] for w in words(alone)] == pytest.approx(
        [w["probability"] for w in words(asking)], abs=1e-4
    )


def test_file_windows_are_retried_and_low_latency_requests_decoded_once(
    strict_transcriber, clips, decode_runs
) -> None:
    """Nothing passes the strict checks: the file window is decoded at every temperature and
    the likeliest decode is kept; the low-latency request is decoded once."""
    clip = clips["jfk.flac"]
    file_window, low_latency = strict_transcriber.transcribe(
        [
            TranscriptionRequest(clip.audio, language="en"),
            TranscriptionRequest(clip.audio, language="en", low_latency=True),
        ]
    )
    # one decode group each (they differ in fallback): the file window's first, all its tries
    file_runs, low_latency_runs = decode_runs[:6], decode_runs[6:]
    assert [t for t, _ in file_runs] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [t for t, _ in low_latency_runs] == [0.0]
    assert all(len(logprobs) == 1 for _, logprobs in decode_runs)
    assert file_window.segments
    kept = file_window.segments[0]
    assert kept["avg_logprob"] == pytest.approx(max(v[0] for _, v in file_runs))
    assert kept["avg_logprob"] == pytest.approx(dict(file_runs)[kept["temperature"]][0])
    assert {segment["temperature"] for segment in low_latency.segments} == {0.0}
    assert all(segment["avg_logprob"] < 0.0 for segment in low_latency.segments)
    assert word_error_rate(clip.text, low_latency.text) == 0.0


def test_a_short_context_request_is_encoded_short_and_retried_as_a_file_window(
    model, clips, decode_runs, encoder_batches
) -> None:
    """A stream's read at its end: the low-latency encoder context (JFK's 11 s and 5-10 s of
    padding), in float32 where low-latency steps are encoded in bfloat16, and every
    temperature tried when the checks fail."""
    strict = BatchTranscriber(
        model, fp16=False, thresholds=DecodeThresholds(logprob=0.0), low_latency_bfloat16=True
    )
    clip = clips["jfk.flac"]
    (result,) = strict.transcribe(
        [TranscriptionRequest(clip.audio, language="en", short_context=True)]
    )
    assert encoder_batches == [(1, 2000, torch.float32)]
    assert [temperature for temperature, _ in decode_runs] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert result.segments


@pytest.mark.parametrize("file_bfloat16", [False, True])
def test_file_windows_encode_in_the_precision_asked_apart_from_live_steps(
    model, clips, encoder_batches, file_bfloat16
) -> None:
    """`file_bfloat16` (an operator's choice for a CPU with AMX) encodes file windows in
    bfloat16 and `low_latency_bfloat16` live steps, each alone: in one batch they are encoded
    apart. These windows keep their words either way (the decoder stays float32)."""
    transcriber = BatchTranscriber(
        model, fp16=False, low_latency_bfloat16=not file_bfloat16, file_bfloat16=file_bfloat16
    )
    jfk, harvard = clips["jfk.flac"], clips["OSR_us_000_0034_8k.wav"]
    window, other_window, step = transcriber.transcribe(
        [
            TranscriptionRequest(jfk.audio, language="en"),
            TranscriptionRequest(harvard.audio[: 30 * 16_000], language="en"),
            TranscriptionRequest(jfk.audio[: 9 * 16_000], language="en", low_latency=True),
        ]
    )
    files, live = (
        (torch.bfloat16, torch.float32) if file_bfloat16 else (torch.float32, torch.bfloat16)
    )
    assert len(encoder_batches) == 2  # the two windows together, the step apart
    assert {rows: precision for rows, _, precision in encoder_batches} == {2: files, 1: live}
    assert word_error_rate(jfk.text, window.text) == 0.0
    # the first 30 s of Harvard's ten sentences: as many words of its reference
    heard = other_window.text.split()
    assert len(heard) > 40
    assert word_error_rate(" ".join(harvard.text.split()[: len(heard)]), " ".join(heard)) < 0.1
    assert step.text


def test_only_low_latency_decodes_get_a_token_budget(model, clips, monkeypatch) -> None:
    """A low-latency request's decode is given its audio's token budget (10 a second and 10
    more: JFK's 11 s get 120, far more than its words need); a file window of the same audio
    gets none. (That a row stops at its budget: `test_decoder.py`.)"""
    budgets: list[object] = []
    decode = WhisperDecoder.decode

    def recorded(decoder, contexts, prompt, *args, max_tokens=(), **options):
        budgets.append(list(max_tokens))
        return decode(decoder, contexts, prompt, *args, max_tokens=max_tokens, **options)

    monkeypatch.setattr(WhisperDecoder, "decode", recorded)
    clip = clips["jfk.flac"]
    low_latency = TranscriptionRequest(clip.audio, language="en", low_latency=True)
    assert max_tokens_for(low_latency) == 120
    results = BatchTranscriber(model, fp16=False).transcribe(
        [low_latency, TranscriptionRequest(clip.audio, language="en")]
    )
    assert budgets == [[120], []]  # one decode group each, in request order
    assert [word_error_rate(clip.text, result.text) for result in results] == [0.0, 0.0]


def test_a_sampled_window_gets_the_same_text_alone_and_in_any_batch(
    strict_transcriber, clips
) -> None:
    """Sampled at temperature 1.0 (the checks fail, so it is the last one tried), what is
    decoded depends only on the window's audio: not on the run, nor on the batch."""
    short, other = clips["hotwords.mp3"].audio, clips["jfk.flac"].audio[: 3 * 16_000]
    window = TranscriptionRequest(short, language="en", temperature=1.0)
    torch.manual_seed(1)
    alone = strict_transcriber.transcribe([window])[0]
    torch.manual_seed(2)
    again = strict_transcriber.transcribe([window])[0]
    neighbour = TranscriptionRequest(other, language="en", temperature=1.0)
    in_batch = strict_transcriber.transcribe([neighbour, window])[1]
    assert {segment["temperature"] for segment in alone.segments} == {1.0}
    assert alone.text == again.text == in_batch.text
    assert [s["tokens"] for s in alone.segments] == [s["tokens"] for s in in_batch.segments]


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ),
    ],
)
def test_each_batch_reports_the_seconds_of_its_phases(model, clips, device) -> None:
    """What `model.py` adds to Triton's metrics: every phase of a decoded batch, once per
    batch (on CUDA each phase waits for the GPU's work before it ends). The warm-up and a
    silent batch are not decodes and report nothing."""
    if device == "cpu":
        fp16 = False
    else:
        from checkpoint import half_precision

        model, fp16 = half_precision(load_model("tiny.en", torch.device(device)).model), True
    reports: list[dict[str, float]] = []
    transcriber = BatchTranscriber(model, fp16=fp16, on_phases=reports.append)
    transcriber.warm_up()
    assert reports == []
    jfk = clips["jfk.flac"].audio
    transcriber.transcribe(
        [TranscriptionRequest(jfk, language="en", word_timestamps=True) for _ in range(2)]
    )
    assert len(reports) == 1 and set(reports[0]) == set(PHASES)
    spent = reports[0]
    assert all(spent[phase] > 0 for phase in ("features", "encode", "decode", "word_timing"))
    assert spent["decode"] > spent["segments"]
    transcriber.transcribe([TranscriptionRequest(np.zeros(16_000, np.float32), language="en")])
    assert len(reports) == 1


def test_a_live_step_writes_nothing_over_the_padding_after_its_audio(model, clips) -> None:
    """A live buffer that ends as a phrase does: 1.3 s of silence, then JFK's first 2.4 s. Its
    low-latency context pads it with 6.3 s of silence, and tiny.en (float32, AVX2) wrote "And
    so my fellow Americans." again over the padding, a segment every 4 s, up to the step's
    token limit: 30 words. No segment may start once the audio has ended."""
    jfk = clips["jfk.flac"].audio
    second = 16_000
    audio = np.concatenate([np.zeros(int(1.3 * second), np.float32), jfk[: int(2.4 * second)]])
    transcriber = BatchTranscriber(model, fp16=False, low_latency_bfloat16=False)
    request = TranscriptionRequest(audio, language="en", low_latency=True)

    step = transcriber.transcribe([request])[0]

    assert word_error_rate("And so my fellow Americans", step.text) == 0
    assert all(segment["start"] < audio.size / second for segment in step.segments)
