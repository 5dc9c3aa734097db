"""`WhisperDecoder` against openai-whisper's own `DecodingTask`, token for token, with real
tiny.en in this process: greedy and with a prompt, in mixed batches, the static step that CUDA
graphs replay (run eagerly on this CPU), the graphs' buckets and buffers with a stand-in for
the capture that replays the step eagerly, and on CUDA the graphs themselves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
from whisper.decoding import DecodingOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from checkpoint import load_model
from cuda_graphs import Replayable
from decoder import DecodePrompt, WhisperDecoder, vocabulary_product_on_cpu
from whisper.audio import N_FRAMES
from whisper_adaptations import encode

pytestmark = pytest.mark.integration
SECOND = 16_000


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model("tiny.en", torch.device("cpu")).model


@pytest.fixture(scope="module")
def windows(clips) -> list[np.ndarray]:
    """Speech of several lengths, one window ending mid-sentence, one of faint noise."""
    jfk, harvard = clips["jfk.flac"].audio, clips["OSR_us_000_0034_8k.wav"].audio
    hotwords = clips["hotwords.mp3"].audio
    quiet = np.random.default_rng(5).standard_normal(3 * SECOND).astype(np.float32) * 0.01
    return [jfk, harvard[: 29 * SECOND], harvard[15 * SECOND :], hotwords, jfk[: 4 * SECOND], quiet]


def encoded(model, audio: np.ndarray, frames: int = N_FRAMES) -> torch.Tensor:
    """The audio's features as the transcriber makes them: a window of `frames` log-Mel frames."""
    weight = model.encoder.conv1.weight
    with torch.inference_mode():
        samples = torch.from_numpy(audio).to(weight.device)
        mel = whisper.log_mel_spectrogram(samples, padding=whisper.audio.N_SAMPLES)
        mel = whisper.pad_or_trim(mel[:, :frames], frames).to(weight.dtype)
        return encode(model.encoder, mel[None])[0]


def prompt(model, text: str | None = None, temperature: float = 0.0) -> DecodePrompt:
    tokenizer = whisper.tokenizer.get_tokenizer(False)
    return DecodePrompt.of(tokenizer, "en", model.dims.n_text_ctx, text, temperature)


def reference(model, features: torch.Tensor, text: str | None = None):
    """openai-whisper's decode of full 30 s windows, as `transcribe()` runs it."""
    with torch.inference_mode():
        return whisper.decode(
            model, features, DecodingOptions(language="en", prompt=text, fp16=False)
        )


class _EagerReplay:
    """Stands in for a CUDA graph on a CPU: a replay runs the captured step again and writes
    its logits where the capture's went, as a graph's replay does."""

    def __init__(self, step) -> None:
        self.step = step
        self.logits = step()

    def replay(self) -> None:
        self.logits.copy_(self.step())


def replayed_eagerly(step) -> tuple[Replayable, torch.Tensor]:
    recording = _EagerReplay(step)
    return recording, recording.logits


# The decoder's three ways of stepping: the CPU default, the masked fixed-shape step that
# graphs replay, and the graphs' own path (buckets, buffers) with the capture stood in for
DECODERS = {
    "dynamic": lambda model: WhisperDecoder(model),
    "static-as-graphed": lambda model: WhisperDecoder(model, static=True),
    "graphs-replayed-eagerly": lambda model: WhisperDecoder(model, capture=replayed_eagerly),
}


def graph_buckets_used(decoder: WhisperDecoder) -> set[int]:
    return set(decoder._graphs.graphs) if decoder._graphs is not None else set()


@pytest.mark.parametrize(
    "shape",
    [(1, 384), (2, 384), (7, 384), (5, 2, 384), (3, 40, 384)],
    ids=["one-row", "two", "seven", "3d", "word-timing-pass"],
)
def test_the_cpu_vocabulary_product_is_the_logits_product(model, shape) -> None:
    """The logits product, operands reordered for the CPU for a few rows (one row padded to
    two), gives every row its own logits, as `hidden @ embedding.T` does."""
    embedding = model.decoder.token_embedding.weight
    hidden = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        got = vocabulary_product_on_cpu(hidden, embedding)
        want = hidden @ embedding.T
    assert got.shape == want.shape == (*shape[:-1], embedding.shape[0])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", list(DECODERS))
@pytest.mark.parametrize(
    "text", [None, "ComfyUI, Triton and Whisper."], ids=["no-prompt", "prompt"]
)
def test_same_tokens_and_scores_as_openai_whisper(model, windows, variant, text) -> None:
    features = torch.stack([encoded(model, window) for window in windows])
    expected = reference(model, features, text)
    decoder = DECODERS[variant](model)
    with torch.inference_mode():
        decoded = decoder.decode(decoder.audio_contexts(list(features)), prompt(model, text))
    assert [d.tokens for d in decoded] == [e.tokens for e in expected]
    assert [d.text for d in decoded] == [e.text for e in expected]
    assert len({len(d.tokens) for d in decoded}) > 3  # rows finish at different steps
    if variant == "graphs-replayed-eagerly":  # 6 rows, then fewer: a larger and a smaller bucket
        assert {8, 1} <= graph_buckets_used(decoder)
    for got, want in zip(decoded, expected, strict=True):
        assert got.avg_logprob == pytest.approx(want.avg_logprob, abs=1e-4)
        assert got.no_speech_prob == pytest.approx(want.no_speech_prob, abs=1e-4)
        assert got.compression_ratio == want.compression_ratio


@pytest.mark.parametrize("variant", list(DECODERS))
def test_rows_of_several_context_lengths_decode_as_alone(model, windows, variant) -> None:
    """Short contexts (live streams' low-latency requests) padded into one batch: each row's
    cross-attention sees its own audio only; finished rows leave the batch mid-decode."""
    frames = [1000, 1500, 1500, 500, 500, 500]  # 10, 15, 15, 5, 5, 5 s of features
    rows = [
        encoded(model, window[: 10 * SECOND], count * 2)
        for window, count in zip(windows, frames, strict=False)
    ]
    decoder = DECODERS[variant](model)
    with torch.inference_mode():
        alone = [decoder.decode(decoder.audio_contexts([row]), prompt(model))[0] for row in rows]
        together = decoder.decode(decoder.audio_contexts(rows), prompt(model))
    assert [t.tokens for t in together] == [a.tokens for a in alone]
    assert len({len(a.tokens) for a in alone}) > 2  # rows finish at different steps


def test_a_cancelled_row_stops_and_the_others_decode_as_before(model, windows) -> None:
    """A row whose request was cancelled leaves the batch at the next check; the rows of
    requests still wanted get the tokens they get without it."""
    rows = [encoded(model, windows[0]), encoded(model, windows[1])]
    decoder = WhisperDecoder(model)
    decoder.cancel_check_seconds = 0.0  # look at every step
    asked: list[int] = []

    def gone() -> bool:
        asked.append(1)
        return True

    with torch.inference_mode():
        contexts = decoder.audio_contexts(rows)
        whole = decoder.decode(contexts, prompt(model))
        cut = decoder.decode(contexts, prompt(model), cancelled=[gone, lambda: False])
    assert len(whole[0].tokens) > 10
    assert len(cut[0].tokens) <= 1  # stopped at the first token
    assert len(asked) == 1  # a cancelled row is not asked about again
    assert cut[1].tokens == whole[1].tokens


def test_a_row_stops_at_its_token_limit_and_the_others_decode_as_before(model, windows) -> None:
    """`max_tokens` (low-latency requests' bound against decoding loops) cuts the row that
    reaches it; a row under its limit gets every token it gets without one."""
    rows = [encoded(model, windows[0]), encoded(model, windows[1])]
    decoder = WhisperDecoder(model)
    with torch.inference_mode():
        contexts = decoder.audio_contexts(rows)
        whole = decoder.decode(contexts, prompt(model))
        cut = decoder.decode(contexts, prompt(model), max_tokens=[7, 224])
    assert len(whole[0].tokens) > 7
    assert cut[0].tokens == whole[0].tokens[:7]
    assert cut[1].tokens == whole[1].tokens


def short_contexts(model, windows, seconds: float) -> list[torch.Tensor]:
    """The windows' first `seconds` as live steps encode them: the audio and 5-10 s of padding."""
    rows = []
    for window in windows:
        audio = window[: int(seconds * SECOND)]
        frames = 100 * 5 * int(np.ceil((audio.size / SECOND + 5) / 5))
        rows.append(encoded(model, audio, min(frames, N_FRAMES)))
    return rows


@pytest.mark.parametrize("variant", list(DECODERS))
def test_drafts_change_no_token_only_the_steps(model, windows, variant) -> None:
    """A live stream's step comes with its previous step's tokens (a second less audio) as a
    draft: every row gets the tokens and scores it gets without one, whether the draft holds
    all the way (the same audio), diverges (a second less, or another window's text), is
    longer than the row's token limit, or is missing, rows of several lengths in one batch."""
    decoder = DECODERS[variant](model)
    with torch.inference_mode():
        contexts = decoder.audio_contexts(short_contexts(model, windows, 9))
        earlier = decoder.decode(
            decoder.audio_contexts(short_contexts(model, windows, 8)), prompt(model)
        )
        plain = decoder.decode(contexts, prompt(model), max_tokens=[100, 100, 8, 100, 100, 100])
        drafts = [
            plain[0].tokens,  # the row's own tokens: all of them hold
            earlier[1].tokens,  # a second less audio: the usual draft
            earlier[2].tokens,  # more tokens than the row's limit
            earlier[0].tokens,  # another window's text
            [],  # none
            earlier[5].tokens,
        ]
        drafted = decoder.decode(
            contexts,
            prompt(model),
            max_tokens=[100, 100, 8, 100, 100, 100],
            drafts=drafts,
            token_logprobs=True,
        )
    assert [d.tokens for d in drafted] == [p.tokens for p in plain]
    assert [d.text for d in drafted] == [p.text for p in plain]
    for got, want in zip(drafted, plain, strict=True):
        assert got.avg_logprob == pytest.approx(want.avg_logprob, abs=1e-4)
        assert got.no_speech_prob == pytest.approx(want.no_speech_prob, abs=1e-4)
    assert plain[1].tokens[:3] == earlier[1].tokens[:3] != plain[1].tokens  # held, then not
    assert len(plain[2].tokens) == 8 < len(earlier[2].tokens)
    assert all(len(d.token_logprobs) == len(d.tokens) for d in drafted)
    if variant == "graphs-replayed-eagerly":  # rows at positions of their own, in the buffers
        assert 8 in graph_buckets_used(decoder)


def test_a_refused_capture_decodes_eagerly_with_the_same_tokens(model, windows, caplog) -> None:
    """A capture CUDA refuses (out of memory, an operation it cannot record) is logged once,
    and the decode goes on with the same step run eagerly."""

    def refused(step):
        raise RuntimeError("operation not permitted when stream is capturing")

    decoder = WhisperDecoder(model, capture=refused)
    with torch.inference_mode():
        contexts = decoder.audio_contexts([encoded(model, window) for window in windows[:3]])
        expected = WhisperDecoder(model).decode(contexts, prompt(model))
        with caplog.at_level("WARNING", logger="decoder"):
            decoded = decoder.decode(contexts, prompt(model))
            again = decoder.decode(contexts, prompt(model))
    assert [d.tokens for d in decoded] == [d.tokens for d in again] == [e.tokens for e in expected]
    assert not decoder.cuda_graphs
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "decoding without CUDA graphs: capturing the step failed: "
        "operation not permitted when stream is capturing"
    ]


def test_sampled_rows_depend_only_on_their_seed(model, windows) -> None:
    decoder = WhisperDecoder(model)
    hot = prompt(model, temperature=1.0)
    with torch.inference_mode():
        contexts = decoder.audio_contexts([encoded(model, window) for window in windows[:3]])
        together = decoder.decode(contexts, hot, seeds=[11, 12, 13])
        again = decoder.decode(contexts[1:2], hot, seeds=[12])
        reseeded = decoder.decode(contexts[1:2], hot, seeds=[99])
        greedy = decoder.decode(contexts[1:2], prompt(model))
    assert together[1].tokens == again[0].tokens
    assert reseeded[0].tokens != again[0].tokens
    assert greedy[0].tokens not in (again[0].tokens, reseeded[0].tokens)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_decode_the_same_tokens_as_eager_fp16(windows) -> None:
    from checkpoint import half_precision

    model = half_precision(load_model("tiny.en", torch.device("cuda")).model)
    text = prompt(model)
    with torch.inference_mode():
        eager_decoder = WhisperDecoder(model, cuda_graphs=False)
        contexts = eager_decoder.audio_contexts([encoded(model, window) for window in windows])
        eager = eager_decoder.decode(contexts, text)
        graphed_decoder = WhisperDecoder(model, cuda_graphs=True)
        graphed = graphed_decoder.decode(contexts, text)
        again = graphed_decoder.decode(contexts[:3], text)  # replayed, a smaller bucket
    assert graphed_decoder._graphs is not None and graphed_decoder._graphs.graphs
    assert [g.text for g in graphed] == [e.text for e in eager]
    assert [a.text for a in again] == [e.text for e in eager[:3]]


def test_word_timing_from_one_batched_pass_matches_openai_whisper(model, windows) -> None:
    """`alignment_passes` stands in for the per-request decoder pass of
    `whisper.timing.find_alignment`: the same words, times and probabilities."""
    tokenizer = whisper.tokenizer.get_tokenizer(False)
    decoder = WhisperDecoder(model)
    chosen = [windows[0], windows[4], windows[3]]  # 11 s, 4 s and 6 s of speech
    with torch.inference_mode():
        contexts = decoder.audio_contexts([encoded(model, window) for window in chosen])
        texts = [
            [t for t in d.tokens if t < tokenizer.eot]
            for d in decoder.decode(contexts, prompt(model))
        ]
        sequences = [
            [*tokenizer.sot_sequence, tokenizer.no_timestamps, *text, tokenizer.eot]
            for text in texts
        ]
        passes = decoder.alignment_passes(contexts, sequences)
    for window, text, alignment in zip(chosen, texts, passes, strict=True):
        mel = whisper.log_mel_spectrogram(torch.from_numpy(window), padding=whisper.audio.N_SAMPLES)
        mel = mel[:, :N_FRAMES]  # as the transcriber cuts its window (see `encoded`)
        frames = window.size // whisper.audio.HOP_LENGTH
        expected = whisper.timing.find_alignment(model, tokenizer, text, mel, frames)
        got = whisper.timing.find_alignment(alignment, tokenizer, text, mel, frames)
        assert [w.word for w in got] == [w.word for w in expected] and len(got) > 5
        # within a frame (20 ms): the attention is computed another way (batched, fused outputs)
        assert [w.start for w in got] == pytest.approx([w.start for w in expected], abs=0.021)
        assert [w.end for w in got] == pytest.approx([w.end for w in expected], abs=0.021)
        assert [w.probability for w in got] == pytest.approx(
            [w.probability for w in expected], abs=1e-3
        )
