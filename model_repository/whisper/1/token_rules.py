"""What a row of a decode may take next, and how it is chosen: openai-whisper's logit filters
as a few tensor operations over the whole batch (`TokenRules`), the per-row state those rules
read (`RowState`), and sampling at a temperature from each row's own generator (`Sampler`).
Greedy choice is the argmax of the filtered logits (`decoder.WhisperDecoder`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from whisper.audio import CHUNK_LENGTH
from whisper.tokenizer import Tokenizer

# openai-whisper's DecodingOptions defaults, which transcribe() uses
MAX_INITIAL_TIMESTAMP_SECONDS = 1.0


class TokenRules:
    """Replaces openai-whisper's logit filters (`whisper.decoding.SuppressBlank`,
    `whisper.decoding.SuppressTokens` with the set `DecodingTask._get_suppress_tokens` makes by
    default, `whisper.decoding.ApplyTimestampRules`), which loop over the rows in Python:
    the same rules applied to a whole batch at once."""

    def __init__(
        self, tokenizer: Tokenizer, vocab: int, audio_ctx: int, device: torch.device
    ) -> None:
        self.eot = tokenizer.eot
        self.timestamp_begin = tokenizer.timestamp_begin
        suppressed = [
            *tokenizer.non_speech_tokens,
            tokenizer.transcribe,
            tokenizer.translate,
            tokenizer.sot,
            tokenizer.sot_prev,
            tokenizer.sot_lm,
        ]
        if tokenizer.no_speech is not None:
            suppressed.append(tokenizer.no_speech)  # its probability is read separately
        if tokenizer.no_timestamps is not None:
            suppressed.append(tokenizer.no_timestamps)
        always = torch.zeros(vocab, dtype=torch.bool)
        always[suppressed] = True
        # the first token: a timestamp no later than 1 s, not a blank, not the end
        first = always.clone()
        first[[*tokenizer.encode(" "), tokenizer.eot]] = True
        first[: self.timestamp_begin] = True
        self.precision = CHUNK_LENGTH / audio_ctx  # seconds per timestamp step
        first[
            self.timestamp_begin + round(MAX_INITIAL_TIMESTAMP_SECONDS / self.precision) + 1 :
        ] = True
        self.always, self.first = always.to(device), first.to(device)
        self.timestamps = torch.arange(vocab - self.timestamp_begin, device=device)

    def first_timestamp_from(self, seconds: Sequence[float]) -> torch.Tensor:
        """For each of `seconds`, the first timestamp token at or after it (a
        `RowState.no_start_from`)."""
        steps = [math.ceil(round(second / self.precision, 6)) for second in seconds]
        return torch.tensor(steps, device=self.timestamps.device) + self.timestamp_begin

    def apply(self, logits: torch.Tensor, state: RowState) -> None:
        """Set the logits of the tokens each row may not take next to -inf (in place). Each
        rule masks only the part of the vocabulary it is about (the text tokens, or the
        timestamps) instead of building a mask over all 51 864 tokens per rule, and no
        softmax is written out: a step's rules and greedy choice at 8 rows took 1.1-1.2 ms
        against 2.1-2.8 ms on 2 CPU cores, in half as many operations (kernels on a GPU)."""
        begin = self.timestamp_begin
        if state.sampled == 0:
            logits.masked_fill_(self.first, -np.inf)
        else:
            logits.masked_fill_(self.always, -np.inf)
            # timestamps come in pairs: after a pair (or a lone first one) text must follow;
            # after text and one timestamp, another timestamp (or the end)
            text_next = state.last_is_timestamp & state.before_last_is_timestamp
            timestamp_next = state.last_is_timestamp & ~state.before_last_is_timestamp
            logits[:, : self.eot].masked_fill_(timestamp_next[:, None], -np.inf)
            # timestamps never go back; one closing a segment may repeat its start (not 0 s long)
            floor = torch.where(timestamp_next, state.last_timestamp, state.last_timestamp + 1)
            logits[:, begin:].masked_fill_(
                text_next[:, None] | (self.timestamps < (floor - begin)[:, None]), -np.inf
            )
            if state.no_start_from is not None:
                # no segment starts where the row's audio has ended: what it would write
                # there is about the padding (tiny.en on a live buffer ending in a pause:
                # its last phrase again and again, up to the row's token limit)
                late = self.timestamps >= (state.no_start_from - begin)[:, None]
                logits[:, begin:].masked_fill_(timestamp_next[:, None] & late, -np.inf)
        # a timestamp when all timestamps together are likelier than any one text token
        # (whisper compares log-probabilities; the softmax's shift is the same on both sides)
        timestamps = logits[:, begin:].float().logsumexp(dim=-1)
        best_text = logits[:, :begin].float().max(dim=-1).values
        logits[:, :begin].masked_fill_((timestamps > best_text)[:, None], -np.inf)


@dataclass
class RowState:
    """Per row, what the timestamp rules need of the tokens sampled so far."""

    # Before any token both flags are True: the first token then counts as "a lone first
    # timestamp" for the rules, whatever came before it.
    last_is_timestamp: torch.Tensor  # bool
    before_last_is_timestamp: torch.Tensor  # bool
    last_timestamp: torch.Tensor  # long; -1 before the first
    sampled: int = 0
    # long, per row (not per position): the first timestamp token no segment may start at
    # (the row's audio's end); None: no such bound
    no_start_from: torch.Tensor | None = None

    @classmethod
    def start(
        cls, rows: int, device: torch.device, no_start_from: torch.Tensor | None = None
    ) -> RowState:
        return cls(
            torch.ones(rows, dtype=torch.bool, device=device),
            torch.ones(rows, dtype=torch.bool, device=device),
            torch.full((rows,), -1, dtype=torch.long, device=device),
            no_start_from=no_start_from,
        )

    @classmethod
    def along(
        cls, tokens: torch.Tensor, timestamp_begin: int, no_start_from: torch.Tensor | None = None
    ) -> RowState:
        """The state of each row after each of its first tokens (rows × positions: element
        [i, j] after row i's first j + 1 `tokens`), as `advance` leaves it token by token."""
        rows = tokens.shape[0]
        before = torch.full((rows, 1), timestamp_begin, dtype=tokens.dtype, device=tokens.device)
        is_timestamp = torch.cat([before, tokens], dim=1) >= timestamp_begin  # one stand-in
        timestamps = torch.where(is_timestamp[:, 1:], tokens, -1)
        return cls(
            is_timestamp[:, 1:],
            is_timestamp[:, :-1],  # before the first token: "nothing yet"
            timestamps.cummax(dim=1).values,  # timestamps never go back: the last is the largest
            sampled=1,
            no_start_from=no_start_from,
        )

    def flattened(self, start: int, stop: int) -> RowState:
        """Of a state of rows × positions (`along`), positions `start` to `stop` as one row
        per element, rows first."""
        positions = self.last_is_timestamp[:, start:stop].shape[1]
        return RowState(
            self.last_is_timestamp[:, start:stop].flatten(),
            self.before_last_is_timestamp[:, start:stop].flatten(),
            self.last_timestamp[:, start:stop].flatten(),
            self.sampled,
            None if self.no_start_from is None else self.no_start_from.repeat_interleave(positions),
        )

    def at(self, positions: torch.Tensor) -> RowState:
        """Of a state of rows × positions (`along`), each row's at its own position; a
        position of -1 is the state before any token."""
        start = RowState.start(positions.shape[0], positions.device)
        picked = [
            torch.where(
                positions >= 0,
                field.gather(1, positions.clamp_min(0)[:, None])[:, 0],
                initial,
            )
            for field, initial in (
                (self.last_is_timestamp, start.last_is_timestamp),
                (self.before_last_is_timestamp, start.before_last_is_timestamp),
                (self.last_timestamp, start.last_timestamp),
            )
        ]
        return RowState(
            picked[0], picked[1], picked[2], sampled=1, no_start_from=self.no_start_from
        )

    def advance(self, tokens: torch.Tensor, timestamp_begin: int) -> None:
        is_timestamp = tokens >= timestamp_begin
        self.before_last_is_timestamp = self.last_is_timestamp
        self.last_is_timestamp = is_timestamp
        self.last_timestamp = torch.where(is_timestamp, tokens, self.last_timestamp)
        self.sampled += 1

    def keep(self, rows: torch.Tensor) -> None:
        self.last_is_timestamp = self.last_is_timestamp[rows]
        self.before_last_is_timestamp = self.before_last_is_timestamp[rows]
        self.last_timestamp = self.last_timestamp[rows]
        if self.no_start_from is not None:
            self.no_start_from = self.no_start_from[rows]


class Sampler:
    """Sampling at a temperature from each row's own generator: a row's tokens depend on its
    seed only, not on the run or the batch (`whisper.decoding.GreedyDecoder.update` samples a
    `Categorical` from torch's global generator)."""

    def __init__(self, temperature: float, seeds: Sequence[int]) -> None:
        self.temperature = temperature
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def choose(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # Gumbel-max: the argmax of logits / T plus Gumbel noise samples softmax(logits / T)
        noise = torch.stack(
            [torch.rand(logits.shape[-1], generator=self.generators[row]) for row in rows.tolist()]
        ).to(logits.device)
        gumbel = -torch.log(-torch.log(noise.clamp_min(1e-20)))
        return (logits.float() / self.temperature + gumbel).argmax(dim=-1)
