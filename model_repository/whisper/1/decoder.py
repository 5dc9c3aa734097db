"""Whisper's token-by-token decode of a batch, without per-token Python overhead.

Replaces openai-whisper's `whisper.decoding.DecodingTask` (`run` and its `_main_loop`), as
`whisper.transcribe.transcribe` uses it: greedy or sampled, one candidate per row, timestamps
on. `DecodingTask` spends most of a decode outside arithmetic: its key/value cache grows by
`torch.cat` at every token, through the forward hooks of
`whisper.model.Whisper.install_kv_cache_hooks`; every row is stepped until the last one
finishes; and the timestamp rules run row by row in Python (`.tolist()` of each row's tokens
at every step). This decoder produces the same tokens by the same rules and arithmetic (up
to float rounding) with:

- a key/value cache allocated once per batch (`kv_cache`): each step writes its keys and
  values in place at its position; cross-attention keys and values are computed once from
  the audio;
- finished rows dropped from the batch (caches compacted), so a step costs only the rows
  still decoding;
- the suppression and timestamp rules as a handful of tensor operations over the batch
  (`token_rules`);
- on CUDA, the one-token step captured as a CUDA graph per batch-size bucket (`cuda_graphs`),
  so a token costs one launch. A graphed step attends over the whole text context with a
  mask (static shapes); the same static step runs eagerly where graphs are off, which is how
  it is tested on a CPU;
- drafts: a greedy row may come with the tokens an earlier decode of the same audio start
  wrote (a live stream's previous step, which heard a second less). One decoder pass over
  every row's draft gives the logits at each of its positions; a row keeps the draft up to
  the first token greedy decoding would not have chosen, takes its own choice there, and
  steps on from that position. The tokens are the ones the row gets without a draft (up to
  float rounding between a pass over many positions and one position at a time); only the
  steps the draft saved are gone. Rows then sit at different text positions, so a step
  feeds each row at its own position.

Rows of different audio lengths share a batch: each row's cross-attention sees only its own
audio positions, so a row decodes as it would alone. Word timing's decoder pass runs for the
whole batch at once too (`alignment_passes`, handed to openai-whisper by `alignment_pass`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from alignment_pass import AlignmentPass
from checkpoint import quantized_int8
from cuda_graphs import Capture, GraphedSteps, bucket_for, capture_cuda_graph
from kv_cache import KeyValueCache, compacted_order
from token_rules import RowState, Sampler, TokenRules
from whisper.model import Whisper
from whisper.tokenizer import Tokenizer
from whisper.utils import compression_ratio

LOGGER = logging.getLogger(__name__)
# How often a decode asks whether its rows' requests were cancelled (asking Triton is a
# round trip to the server process; a token costs 5-20 ms on a CPU, far less on a GPU).
CANCEL_CHECK_SECONDS = 0.25


@dataclass(frozen=True)
class Decoded:
    """One row's decode, with the scores `transcribe()` judges a decode by."""

    tokens: list[int]  # sampled text and timestamp tokens, up to the end of text
    text: str
    language: str
    avg_logprob: float  # sum of the sampled tokens' log-probabilities / (tokens + 1)
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    # each of `tokens`' log-probability, when the decode was asked to keep them
    token_logprobs: list[float] | None = None


@dataclass(frozen=True)
class DecodePrompt:
    """What a group of rows decodes with: its tokenizer, the tokens it starts from (previous
    text, start-of-transcript sequence) and the sampling temperature (0: greedy)."""

    tokenizer: Tokenizer
    language: str
    initial_tokens: tuple[int, ...]
    temperature: float = 0.0

    @classmethod
    def of(
        cls,
        tokenizer: Tokenizer,
        language: str,
        text_ctx: int,
        prompt: str | None,
        temperature: float,
    ) -> DecodePrompt:
        """As `whisper.decoding.DecodingTask._get_initial_tokens` builds it: previous-text
        tokens (at most half the context) ahead of the start-of-transcript sequence."""
        tokens = list(tokenizer.sot_sequence)
        if prompt:
            previous = tokenizer.encode(" " + prompt.strip())
            tokens = [tokenizer.sot_prev, *previous[-(text_ctx // 2 - 1) :], *tokens]
        return cls(tokenizer, language, tuple(tokens), temperature)

    @property
    def sot_index(self) -> int:
        return self.initial_tokens.index(self.tokenizer.sot)


class _Sampled:
    """Per row of a decode (its index in the batch as it started): the tokens sampled so far
    (end of text after them), their log-probabilities' sum, each one's when kept, and how
    many there are."""

    def __init__(
        self, rows: int, text_ctx: int, eot: int, keep_logprobs: bool, device: torch.device
    ) -> None:
        self.tokens = torch.full((rows, text_ctx), eot, dtype=torch.long, device=device)
        self.sum_logprobs = torch.zeros(rows, device=device)
        self.logprobs = torch.zeros(rows, text_ctx, device=device) if keep_logprobs else None
        self.counts = torch.zeros(rows, dtype=torch.long, device=device)

    def add(self, rows: torch.Tensor, tokens: torch.Tensor, logprobs: torch.Tensor) -> None:
        """One more token for each of `rows`."""
        at = self.counts[rows]
        self.tokens[rows, at] = tokens
        if self.logprobs is not None:
            self.logprobs[rows, at] = logprobs
        self.sum_logprobs.index_add_(0, rows, logprobs)
        self.counts[rows] = at + 1

    def start_with(
        self, tokens: torch.Tensor, logprobs: torch.Tensor, counts: torch.Tensor
    ) -> None:
        """Every row's first `counts` of `tokens` (rows × positions), before any other."""
        taken = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < counts[:, None]
        width = tokens.shape[1]
        self.tokens[:, :width] = torch.where(taken, tokens, self.tokens[:, :width])
        logprobs = torch.where(taken, logprobs, 0.0)
        if self.logprobs is not None:
            self.logprobs[:, :width] = logprobs
        self.sum_logprobs += logprobs.sum(dim=1)
        self.counts = counts.clone()


def _fused_self_attention_projection(attention: Any) -> torch.nn.Module:
    """Self-attention's query, key and value projections as one matrix product (the key has
    no bias); in int8 when the model's are (`checkpoint.quantize_linear_layers`)."""
    projections = (attention.query, attention.key, attention.value)
    quantized = not isinstance(attention.query, torch.nn.Linear)
    weights = [p.weight().dequantize() if quantized else p.weight for p in projections]
    biases = [(p.bias() if quantized else p.bias) for p in projections]
    biases[1] = torch.zeros_like(biases[0])
    fused = torch.nn.Linear(
        weights[0].shape[1],
        3 * weights[0].shape[0],
        device=weights[0].device,
        dtype=weights[0].dtype,
    )
    fused.requires_grad_(False)
    fused.weight.copy_(torch.cat(weights))
    fused.bias.copy_(torch.cat(biases))
    return quantized_int8(fused) if quantized else fused


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, positions, width) as (batch, heads, positions, head width)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _visible(positions: torch.Tensor, keys: int) -> torch.Tensor:
    """Which of the first `keys` text positions a token at each of `positions` attends to:
    those up to its own (positions × keys)."""
    return torch.arange(keys, device=positions.device)[None, :] <= positions[:, None]


def _at_positions(x: torch.Tensor, row_positions: torch.Tensor | None) -> torch.Tensor:
    """Keys or values (batch × heads × positions × head width) shaped for their cache write:
    as they are, or one position per row (batch × heads × head width)."""
    return x if row_positions is None else x[:, :, 0]


def _attend(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """Multi-head attention of queries (batch, positions, width) over head-major keys and
    values, as the SDPA path of `whisper.model.MultiHeadAttention.qkv_attention` computes
    it."""
    attended = F.scaled_dot_product_attention(
        _heads(q, keys.shape[1]), keys, values, attn_mask=mask, is_causal=causal
    )
    return attended.transpose(1, 2).flatten(start_dim=2)


# A draft's logits are computed this many positions at a time (`_follow_drafts`): most
# drafts hold for part of their length, and the logits product is most of a position's cost.
DRAFT_BLOCK = 8
# Up to this many rows the CPU's logits product is computed as `embedding @ hidden.T`
REORDERED_MAX_ROWS = 11


def vocabulary_product_on_cpu(hidden: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """`hidden @ embedding.T` (the logits: n_state x 51 864 for every row), computed as the
    CPU does it fastest. A decoding step's product reads the whole float32 embedding (80 MB
    for tiny.en) for a few rows, and then the order of the operands decides what it costs:
    as `embedding @ hidden.T`, the embedding in the checkpoint's row-major layout, MKL streams
    it once for all rows (2 vCPU AMD EPYC, 2 threads: 2.0 / 2.8 / 4.8 / 7.2 ms at 2 / 4 / 8 /
    9 rows, against 6.0 / 9.9 / 9.9 / 11.6 ms the other way round; the same with MKL held to
    AVX2). A single row takes MKL's slow matrix-vector path there (7.5 to 11 ms), so it is
    given a copy of itself as a second row. From 12 rows on (word timing's pass over every
    token of a batch) the usual order is as fast or faster: 30 against 46 ms at 100 rows."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    rows = flat.shape[0]
    if rows > REORDERED_MAX_ROWS:
        logits = flat @ embedding.T
    else:
        if rows == 1:
            flat = torch.cat([flat, flat])
        logits = (embedding @ flat.T).T[:rows].contiguous()
    return logits.reshape(*hidden.shape[:-1], embedding.shape[0])


class WhisperDecoder:
    """Decodes batches of encoded audio with one Whisper model's text decoder.

    `cuda_graphs` (CUDA only) captures the one-token step per batch-size bucket. `static`
    runs that same masked, fixed-shape step eagerly (what graphs replay); off, a step attends
    only to the positions written so far (fastest without graphs, the CPU default).
    `capture` stands in for CUDA graph capture, on any device (tests on a CPU)."""

    def __init__(
        self,
        model: Whisper,
        *,
        cuda_graphs: bool = False,
        static: bool = False,
        capture: Capture | None = None,
    ) -> None:
        self.model = model
        decoder = model.decoder
        self.blocks = list(decoder.blocks)
        self.heads = self.blocks[0].attn.n_head
        self.width = model.dims.n_text_state
        self.text_ctx = model.dims.n_text_ctx
        self.audio_ctx = model.dims.n_audio_ctx
        self.vocab = model.dims.n_vocab
        self.device = next(model.parameters()).device
        if capture is None and cuda_graphs and self.device.type == "cuda":
            capture = capture_cuda_graph
        self._capture = capture
        self.static = bool(static) or capture is not None
        self._qkv = [_fused_self_attention_projection(b.attn) for b in self.blocks]
        self._rules: dict[int, TokenRules] = {}
        self._cache: KeyValueCache | None = None
        self._graphs: GraphedSteps | None = None
        self.cancel_check_seconds = CANCEL_CHECK_SECONDS

    @property
    def cuda_graphs(self) -> bool:
        """Whether steps replay captured graphs (until a capture fails)."""
        return self._capture is not None

    # -- the decoder's arithmetic ------------------------------------------------------------

    def audio_contexts(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """What the decoder reads of each request's audio features (positions × width): the
        cross-attention keys and values of every layer (layers × 2 × heads × positions ×
        head width). Computed once per request and shared by every decode of it (fallback
        temperatures, word timing), not once per pass. Requests of equal length together."""
        contexts: list[torch.Tensor] = [None] * len(features)  # type: ignore[list-item]
        by_length: dict[int, list[int]] = {}
        for index, row in enumerate(features):
            by_length.setdefault(row.shape[0], []).append(index)
        for indices in by_length.values():
            batch = torch.stack([features[i] for i in indices])
            rows, positions = batch.shape[:2]
            # rows × layers × 2 × heads × positions × head width, each projection written
            # into its place (stacking them copied every row's keys and values twice)
            projected = batch.new_empty(
                rows, len(self.blocks), 2, self.heads, positions, self.width // self.heads
            )
            for layer, block in enumerate(self.blocks):
                projected[:, layer, 0] = _heads(block.cross_attn.key(batch), self.heads)
                projected[:, layer, 1] = _heads(block.cross_attn.value(batch), self.heads)
            for index, context in zip(indices, projected, strict=True):
                contexts[index] = context
        return contexts

    def _cross_mask(self, lengths: Sequence[int], positions: int) -> torch.Tensor | None:
        """Which audio positions each row may attend to (its own, not the padding), or None
        when every row sees all `positions`."""
        visible = (
            torch.arange(positions, device=self.device)[None, :]
            < torch.tensor(lengths, device=self.device)[:, None]
        )
        return None if bool(visible.all()) else visible[:, None, None, :]

    def _layers(
        self,
        x: torch.Tensor,
        cache: KeyValueCache,
        self_attention,
        cross_mask: torch.Tensor | None,
        audio_positions: int,
        cross_scores: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The decoder's blocks; with `cross_scores`, each layer's cross-attention scores
        (before the softmax, batch × heads × text × audio positions) are appended to it."""
        rows = x.shape[0]
        for layer, block in enumerate(self.blocks):
            q, k, v = self._qkv[layer](block.attn_ln(x)).split(self.width, dim=-1)
            x = x + block.attn.out(self_attention(layer, q, k, v))
            q = block.cross_attn.query(block.cross_attn_ln(x))
            keys = cache.cross_keys[layer, :rows, :, :audio_positions]
            values = cache.cross_values[layer, :rows, :, :audio_positions]
            if cross_scores is not None:
                scale = keys.shape[-1] ** -0.25  # as openai-whisper scales both sides
                cross_scores.append(
                    ((_heads(q, self.heads) * scale) @ (keys * scale).transpose(-1, -2)).float()
                )
            x = x + block.cross_attn.out(_attend(q, keys, values, cross_mask))
            x = x + block.mlp(block.mlp_ln(x))
        return x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.model.decoder.ln(x)
        embedding = self.model.decoder.token_embedding.weight
        if self.device.type == "cpu":
            return vocabulary_product_on_cpu(hidden, embedding)
        return (hidden @ embedding.to(x.dtype).T).float()

    def _forward(
        self,
        tokens: torch.Tensor,
        position: int,
        cache: KeyValueCache,
        cross_mask: torch.Tensor | None,
        audio_positions: int,
        cross_scores: list[torch.Tensor] | None = None,
        row_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states of `tokens` (batch × count) at text positions from `position`,
        attending to the positions written so far; writes their keys and values.
        `row_positions`: rows at positions of their own (one token each, the furthest at
        `position`), each attending to its own positions only."""
        rows, count = tokens.shape
        end = position + count
        decoder = self.model.decoder
        if row_positions is None:
            x = decoder.token_embedding(tokens) + decoder.positional_embedding[position:end]
            write: tuple[Any, ...] = (slice(None), slice(None), slice(position, end))
            mask = None
            if count > 1 and position:  # SDPA's `is_causal` is causal from position 0 only
                mask = _visible(torch.arange(position, end, device=tokens.device), end)
        else:
            x = decoder.token_embedding(tokens) + decoder.positional_embedding[row_positions, None]
            write = (torch.arange(rows, device=tokens.device), slice(None), row_positions)
            mask = _visible(row_positions, end)[:, None, None, :]
        x = x.to(cache.self_keys.dtype)

        def self_attention(layer: int, q, k, v) -> torch.Tensor:
            keys, values = cache.self_keys[layer, :rows], cache.self_values[layer, :rows]
            keys[write] = _at_positions(_heads(k, self.heads), row_positions)
            values[write] = _at_positions(_heads(v, self.heads), row_positions)
            causal = count > 1 and not position
            return _attend(q, keys[:, :, :end], values[:, :, :end], mask, causal=causal)

        return self._layers(x, cache, self_attention, cross_mask, audio_positions, cross_scores)

    def _static_step(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KeyValueCache,
        cross_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Logits after one token per row, each at its own text position (`positions`), with
        fixed shapes: every text position is attended, those a row has not written masked."""
        rows = tokens.shape[0]
        decoder = self.model.decoder
        x = decoder.token_embedding(tokens) + decoder.positional_embedding[positions, None]
        x = x.to(cache.self_keys.dtype)
        written = _visible(positions, self.text_ctx)[:, None, None, :]
        write = (torch.arange(rows, device=tokens.device), slice(None), positions)

        def self_attention(layer: int, q, k, v) -> torch.Tensor:
            keys, values = cache.self_keys[layer, :rows], cache.self_values[layer, :rows]
            keys[write] = _at_positions(_heads(k, self.heads), positions)
            values[write] = _at_positions(_heads(v, self.heads), positions)
            return _attend(q, keys, values, written)

        hidden = self._layers(x, cache, self_attention, cross_mask, cache.audio_ctx)
        return self._logits(hidden[:, -1])

    # -- the loop ----------------------------------------------------------------------------

    def _rules_for(self, tokenizer: Tokenizer) -> TokenRules:
        key = id(tokenizer)
        if key not in self._rules:
            self._rules[key] = TokenRules(tokenizer, self.vocab, self.audio_ctx, self.device)
        return self._rules[key]

    def _cache_for(self, rows: int, audio_positions: int, dtype: torch.dtype) -> KeyValueCache:
        """A cache for the batch: kept between calls where graphs hold its addresses (grown
        to the next bucket when too small), else one of the batch's own size."""
        if not self.static:
            return KeyValueCache(
                len(self.blocks),
                rows,
                self.heads,
                self.text_ctx,
                audio_positions,
                self.width,
                dtype,
                self.device,
            )
        if self._cache is None or not self._cache.fits(rows, self.audio_ctx, dtype):
            capacity = bucket_for(rows) or rows
            self._cache = KeyValueCache(
                len(self.blocks),
                capacity,
                self.heads,
                self.text_ctx,
                self.audio_ctx,
                self.width,
                dtype,
                self.device,
            )
            self._graphs = (
                GraphedSteps(self._static_step, self._cache, self.device, self._capture)
                if self._capture is not None
                else None
            )
        return self._cache

    def alignment_passes(
        self,
        contexts: Sequence[torch.Tensor],
        texts: Sequence[Sequence[int]],
        probabilities: Sequence[bool] = (),
    ) -> list[AlignmentPass]:
        """For word timing, each row's decoder pass over `texts[i]` (start-of-transcript
        sequence, no-timestamps token, the text tokens, end of text: what openai-whisper's
        `timing.find_alignment` feeds) over its audio (`audio_contexts`), all rows as one
        batch instead of a pass each. The logits, from which find_alignment takes the words'
        probabilities, only for the rows whose `probabilities` is true (all by default): the
        times come from cross-attention alone, and the vocabulary product over every token
        of a batch was a tenth of a live step's model time on a CPU."""
        if not texts:
            return []
        wanted = list(probabilities) or [True] * len(texts)
        lengths = [context.shape[3] for context in contexts]
        cross_mask = self._cross_mask(lengths, max(lengths))
        width = max(len(text) for text in texts)
        eot = texts[0][-1]
        tokens = torch.tensor(
            [[*text, *[eot] * (width - len(text))] for text in texts], device=self.device
        )
        cache = KeyValueCache(
            len(self.blocks),
            len(texts),
            self.heads,
            width,
            max(lengths),
            self.width,
            contexts[0].dtype,
            self.device,
        )
        cache.write_cross(contexts)
        scores: list[torch.Tensor] = []
        hidden = self._forward(tokens, 0, cache, cross_mask, max(lengths), scores)
        rows = [row for row, wants in enumerate(wanted) if wants]
        logits = dict(zip(rows, self._logits(hidden[rows]), strict=True)) if rows else {}
        return [
            AlignmentPass(
                self.model,
                logits[row][: len(text)] if row in logits else None,
                [layer[row, :, : len(text), : lengths[row]] for layer in scores],
                len(text),
            )
            for row, text in enumerate(texts)
        ]

    def decode(
        self,
        contexts: Sequence[torch.Tensor],
        prompt: DecodePrompt,
        seeds: Sequence[int] = (),
        cancelled: Sequence[Callable[[], bool]] = (),
        token_logprobs: bool = False,
        max_tokens: Sequence[int] = (),
        drafts: Sequence[Sequence[int]] = (),
        audio_ends: Sequence[float] = (),
    ) -> list[Decoded]:
        """Decode each row's audio (`audio_contexts`; rows may differ in length, each
        attends to its own), as `whisper.decoding.DecodingTask.run` does with one candidate
        per row (`_main_loop` stepping, `GreedyDecoder` choosing). `seeds`: one per row when
        sampling (temperature above 0), so a row's sample depends only on its own seed.
        `cancelled`: one per row, asked every `CANCEL_CHECK_SECONDS`; a row whose request
        was cancelled stops decoding there (its result is cut short: nobody wants it).
        `token_logprobs`: keep each sampled token's log-probability (one more tensor write a
        step; none when not asked). `max_tokens`: one per row, the most tokens it may sample
        (a row that reaches it stops as if cancelled; none: up to half the text context).
        `drafts`: one per row (empty: none), tokens (text and timestamps) a greedy decode
        checks in one pass and keeps as far as it agrees (see the module docstring);
        ignored when sampling. `audio_ends`: one per row, where its audio ends in its
        context, in seconds: no segment of it starts there or later (its text would be made
        up over the padding); none: anywhere."""
        tokenizer, rules = prompt.tokenizer, self._rules_for(prompt.tokenizer)
        rows = len(contexts)
        lengths = [context.shape[3] for context in contexts]
        audio_positions = max(lengths)
        cache = self._cache_for(rows, audio_positions, contexts[0].dtype)
        cache.write_cross(contexts)
        mask_positions = cache.audio_ctx if self.static else audio_positions
        cross_mask = self._cross_mask(lengths, mask_positions)
        sampler = Sampler(prompt.temperature, seeds) if prompt.temperature > 0 else None
        no_start_from = rules.first_timestamp_from(audio_ends) if audio_ends else None

        initial = torch.tensor([prompt.initial_tokens] * rows, device=self.device)
        begin = len(prompt.initial_tokens)
        hidden = self._forward(initial, 0, cache, cross_mask, mask_positions)
        at_start = self._logits(hidden[:, [prompt.sot_index, -1]])
        no_speech = (
            at_start[:, 0].softmax(dim=-1)[:, tokenizer.no_speech].tolist()
            if tokenizer.no_speech is not None
            else [float("nan")] * rows
        )
        logits = at_start[:, 1]

        watch = _CancelWatch(cancelled, self.cancel_check_seconds)
        active = torch.arange(rows, device=self.device)  # original index of each live row
        sampled = _Sampled(rows, self.text_ctx, tokenizer.eot, token_logprobs, self.device)
        max_new = min(self.text_ctx // 2, self.text_ctx - begin + 1)
        row_limits = [min(limit, max_new) for limit in max_tokens] or [max_new] * rows
        limits = torch.tensor(row_limits, device=self.device)
        taken = [
            min(len(draft), limit - 1)
            for draft, limit in zip(drafts or [()] * rows, row_limits, strict=True)
        ]
        if sampler is None and any(taken):
            state, next_tokens = self._follow_drafts(
                logits,
                drafts,
                taken,
                rules,
                sampled,
                begin,
                cache,
                cross_mask,
                mask_positions,
                no_start_from,
            )
            counts = sampled.counts.tolist()
            longest, ragged = max(counts), len(set(counts)) > 1  # tokens the furthest row has
        else:
            state = RowState.start(rows, self.device, no_start_from)
            next_tokens = self._choose(logits, state, rules, sampler, active, sampled)
            longest, ragged = 1, False
        while True:
            counts_now = sampled.counts[active]
            finished = (next_tokens == tokenizer.eot) | (counts_now >= limits[active])
            if watch.due():
                finished |= watch.rows(active)
            if bool(finished.any()):
                if bool(finished.all()):
                    break
                keep = compacted_order(finished)
                active, next_tokens, counts_now, cross_mask = (
                    active[keep],
                    next_tokens[keep],
                    counts_now[keep],
                    (None if cross_mask is None else cross_mask[keep]),
                )
                state.keep(keep)
                cache.keep(keep, begin + longest - 1)
            state.advance(next_tokens, rules.timestamp_begin)
            logits = self._step(
                next_tokens,
                begin + counts_now - 1,  # where each row's last token goes
                begin + longest - 1,
                ragged,
                cache,
                cross_mask,
                mask_positions,
            )
            longest += 1
            next_tokens = self._choose(logits, state, rules, sampler, active, sampled)

        return self._results(
            sampled.tokens.tolist(),
            sampled.sum_logprobs.tolist(),
            no_speech,
            prompt,
            None if sampled.logprobs is None else sampled.logprobs.tolist(),
        )

    @staticmethod
    def _choose(
        logits: torch.Tensor,
        state: RowState,
        rules: TokenRules,
        sampler: Sampler | None,
        active: torch.Tensor,
        sampled: _Sampled,
    ) -> torch.Tensor:
        """Each active row's next token under the rules, recorded in `sampled`."""
        rules.apply(logits, state)
        tokens = sampler.choose(logits, active) if sampler else logits.argmax(dim=-1)
        logprobs = F.log_softmax(logits.float(), dim=-1)
        sampled.add(active, tokens, logprobs.gather(1, tokens[:, None])[:, 0])
        return tokens

    def _follow_drafts(
        self,
        logits: torch.Tensor,
        drafts: Sequence[Sequence[int]],
        taken: Sequence[int],
        rules: TokenRules,
        sampled: _Sampled,
        begin: int,
        cache: KeyValueCache,
        cross_mask: torch.Tensor | None,
        audio_positions: int,
        no_start_from: torch.Tensor | None,
    ) -> tuple[RowState, torch.Tensor]:
        """Greedy decoding's first tokens of every row, each row's draft (its first `taken`
        tokens) checked in one decoder pass: `logits` are every row's at its first
        position, the pass gives the hidden states after each draft token. A row keeps its
        draft up to the first token that the rules and argmax would not have chosen, plus its
        own choice there (or after the whole draft). Since a row that keeps its draft has
        sampled exactly the draft's tokens, the rules' state at every position is known up
        front, and the rules and choices run on a block of positions at once; the logits
        are computed a block at a time, for the rows still agreeing (the others' are zeros,
        never read), up to where none does. Recorded in `sampled`; returns the rows' state
        before that last token, and the token."""
        rows, width = len(drafts), max(taken)
        timestamp_begin = rules.timestamp_begin
        draft = torch.full((rows, width + 1), -1, dtype=torch.long)  # -1: no draft token
        for row, (row_draft, count) in enumerate(zip(drafts, taken, strict=True)):
            draft[row, :count] = torch.tensor(row_draft[:count], dtype=torch.long)
        draft = draft.to(self.device)
        fed = torch.where(draft[:, :width] >= 0, draft[:, :width], rules.eot)
        hidden = self._forward(fed, begin, cache, cross_mask, audio_positions)
        along = RowState.along(draft[:, :width], timestamp_begin, no_start_from)
        rules.apply(logits, RowState.start(rows, self.device))
        blocks, agreeing, done = (
            [logits[:, None]],
            torch.ones_like(draft[:, 0], dtype=torch.bool),
            1,
        )
        while True:
            block = blocks[-1]
            choices = block.argmax(dim=-1)
            runs = (choices == draft[:, done - block.shape[1] : done]).long().cumprod(dim=1)
            agreeing &= runs[:, -1].bool()
            if done > width or not bool(agreeing.any()):
                break
            following = hidden[:, done - 1 : done - 1 + DRAFT_BLOCK]
            block = logits.new_zeros(*following.shape[:2], logits.shape[-1])
            going_on = agreeing.nonzero()[:, 0]
            block[going_on] = self._logits(following[going_on])
            state = along.flattened(done - 1, done - 1 + block.shape[1])
            rules.apply(block.flatten(end_dim=1), state)
            blocks.append(block)
            done += block.shape[1]
        every = torch.cat(blocks, dim=1)  # rows × examined positions × vocabulary
        best = every.float().max(dim=-1)
        tokens = best.indices  # what each row takes at each position, if it got that far
        agreed = (tokens == draft[:, : tokens.shape[1]]).long().cumprod(dim=1).sum(dim=1)
        logprobs = best.values - every.float().logsumexp(dim=-1)
        sampled.start_with(tokens, logprobs, agreed + 1)
        return along.at(agreed - 1), tokens.gather(1, agreed[:, None])[:, 0]

    def _step(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        furthest: int,
        ragged: bool,
        cache: KeyValueCache,
        cross_mask: torch.Tensor | None,
        audio_positions: int,
    ) -> torch.Tensor:
        """Logits after one more token per row, each at its own text position (`positions`;
        `furthest` is the largest of them, and every one unless `ragged`)."""
        if self._graphs is not None and bucket_for(tokens.shape[0]) is not None:
            try:
                return self._graphs.run(tokens, positions, cross_mask)
            except RuntimeError as error:  # a capture CUDA refused: the same step, eagerly
                LOGGER.warning("decoding without CUDA graphs: capturing the step failed: %s", error)
                self._graphs, self._capture = None, None
        if self.static:
            rows = tokens.shape[0]
            if cross_mask is None:
                cross_mask = torch.ones(
                    rows, 1, 1, audio_positions, dtype=torch.bool, device=self.device
                )
            return self._static_step(tokens[:, None], positions, cache, cross_mask)
        hidden = self._forward(
            tokens[:, None],
            furthest,
            cache,
            cross_mask,
            audio_positions,
            row_positions=positions if ragged else None,
        )
        return self._logits(hidden[:, -1])

    @staticmethod
    def _results(
        sampled: list[list[int]],
        sum_logprobs: list[float],
        no_speech: list[float],
        prompt: DecodePrompt,
        token_logprobs: list[list[float]] | None = None,
    ) -> list[Decoded]:
        tokenizer = prompt.tokenizer
        results = []
        for row, tokens in enumerate(sampled):
            tokens = tokens[: tokens.index(tokenizer.eot)] if tokenizer.eot in tokens else tokens
            text = tokenizer.decode(tokens).strip()
            results.append(
                Decoded(
                    language=prompt.language,
                    tokens=tokens,
                    text=text,
                    avg_logprob=sum_logprobs[row] / (len(tokens) + 1),
                    no_speech_prob=no_speech[row],
                    temperature=prompt.temperature,
                    compression_ratio=compression_ratio(text),
                    token_logprobs=(
                        None if token_logprobs is None else token_logprobs[row][: len(tokens)]
                    ),
                )
            )
        return results


class _CancelWatch:
    """Which rows of a decode belong to cancelled requests, asked at most every `interval`
    seconds (rows of one request share its check, which is asked once per look)."""

    def __init__(self, checks: Sequence[Callable[[], bool]], interval: float) -> None:
        self.checks, self.interval = checks, interval
        self.last = time.monotonic()

    def due(self) -> bool:
        if not self.checks or time.monotonic() - self.last < self.interval:
            return False
        self.last = time.monotonic()
        return True

    def rows(self, active: torch.Tensor) -> torch.Tensor:
        answers: dict[int, bool] = {}
        flags = []
        for row in active.tolist():
            check = self.checks[row]
            if id(check) not in answers:
                answers[id(check)] = bool(check())
            flags.append(answers[id(check)])
        return torch.tensor(flags, dtype=torch.bool, device=active.device)
