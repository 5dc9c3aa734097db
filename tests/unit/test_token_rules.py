"""The decode loop's token rules (`TokenRules` in model_repository/whisper/1/token_rules.py),
applied to a whole batch at once, against openai-whisper's own logit filters applied as
`DecodingTask` applies them: the same tokens forbidden, row by row, after random token
histories."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from whisper.decoding import (
    ApplyTimestampRules,
    DecodingOptions,
    DecodingTask,
    SuppressBlank,
    SuppressTokens,
)
from whisper.tokenizer import Tokenizer, get_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from token_rules import RowState, TokenRules

AUDIO_CTX = 1500  # a full window: timestamps every 0.02 s
MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1 s, as DecodingOptions has it
ROWS = 8


def whisper_filtered(logits: torch.Tensor, tokenizer: Tokenizer, tokens: torch.Tensor) -> None:
    """openai-whisper's filters for a greedy decode with default options, in its order."""
    sample_begin = len(tokenizer.sot_sequence)
    # the set DecodingTask makes for the default options, by its own method
    task = SimpleNamespace(options=DecodingOptions(), tokenizer=tokenizer)
    suppressed = DecodingTask._get_suppress_tokens(task)  # type: ignore[arg-type]
    for rule in (
        SuppressBlank(tokenizer, sample_begin),
        SuppressTokens(suppressed),
        ApplyTimestampRules(tokenizer, sample_begin, MAX_INITIAL_TIMESTAMP_INDEX),
    ):
        rule.apply(logits, tokens)


def histories(tokenizer: Tokenizer, vocab: int, length: int, seed: int) -> torch.Tensor:
    """Rows of `length` sampled tokens: text, and timestamps that never go back, alone or in
    pairs, as a decode writes them (pairs repeating a time too)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(ROWS):
        row, last = [], tokenizer.timestamp_begin
        for _ in range(length):
            if torch.rand(1, generator=generator).item() < 0.45:
                step = int(torch.randint(0, 40, (1,), generator=generator))
                last = min(last + step, vocab - 1)
                row.append(last)
            else:
                row.append(int(torch.randint(0, tokenizer.eot, (1,), generator=generator)))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long).reshape(ROWS, length)


@pytest.mark.parametrize(("multilingual", "vocab"), [(False, 51864), (True, 51865)])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_batch_rules_forbid_what_openai_whisper_forbids(
    multilingual: bool, vocab: int, length: int, seed: int
) -> None:
    tokenizer = get_tokenizer(multilingual, language="en", task="transcribe")
    sampled = histories(tokenizer, vocab, length, seed)
    generator = torch.Generator().manual_seed(100 + seed)
    logits = torch.randn(ROWS, vocab, generator=generator) * 3
    # some rows favour timestamps, others text: the rule between them goes both ways
    logits[:, tokenizer.timestamp_begin :] += torch.linspace(-12, 4, ROWS)[:, None]
    prefix = torch.tensor([tokenizer.sot_sequence] * ROWS, dtype=torch.long)

    expected = logits.clone()
    whisper_filtered(expected, tokenizer, torch.cat([prefix, sampled], dim=1))

    rules = TokenRules(tokenizer, vocab, AUDIO_CTX, torch.device("cpu"))
    state = RowState.start(ROWS, torch.device("cpu"))
    for step in range(length):
        state.advance(sampled[:, step], tokenizer.timestamp_begin)
    states = [state]
    if length:  # the state a draft's check reads (`RowState.along`): the same, not stepped
        along = RowState.along(sampled, tokenizer.timestamp_begin)
        states.append(along.at(torch.full((ROWS,), length - 1)))
    for candidate in states:
        got = logits.clone()
        rules.apply(got, candidate)
        assert torch.equal(got.isinf(), expected.isinf())
        assert torch.equal(got[~got.isinf()], expected[~expected.isinf()])


def test_no_segment_starts_after_a_rows_audio_has_ended() -> None:
    """With `no_start_from` (a live step's audio end), a row that has just closed a segment
    may start the next one only before that time, or end; the other rules are as before, and
    the state a draft's check reads (`along`, by position) applies it alike."""
    tokenizer = get_tokenizer(False, language="en", task="transcribe")
    vocab, begin = 51864, tokenizer.timestamp_begin
    rules = TokenRules(tokenizer, vocab, AUDIO_CTX, torch.device("cpu"))
    ends = rules.first_timestamp_from([3.7, 3.7, 10.0])
    assert (ends - begin).tolist() == [185, 185, 500]
    text = tokenizer.encode(" And so")
    histories = torch.tensor(
        [
            [begin, *text, begin + 200],  # a segment closed past 3.7 s: only the end is left
            [begin, *text, begin + 150],  # closed at 3 s: the next may start at 3-3.68 s
            [begin, *text, begin + 200],  # closed at 4 s, audio to 10 s: 4-9.98 s
        ]
    )
    logits = torch.zeros(3, vocab)
    logits[:, tokenizer.eot] = 10.0  # likelier than all timestamps together: the end stays
    stepped = RowState.start(3, torch.device("cpu"), ends)
    for step in range(histories.shape[1]):
        stepped.advance(histories[:, step], begin)
    by_position = RowState.along(histories, begin, ends).at(torch.full((3,), 3))
    for state in (stepped, by_position):
        got = logits.clone()
        rules.apply(got, state)
        # text and the end (the specials between them are the other rules' business)
        allowed = [
            [t for t in (~row.isinf()).nonzero()[:, 0].tolist() if t == tokenizer.eot or t >= begin]
            for row in got
        ]
        assert not got[:, : tokenizer.eot].isfinite().any()  # a segment was closed: no text
        assert allowed[0] == [tokenizer.eot]
        assert allowed[1] == [tokenizer.eot, *range(begin + 150, begin + 185)]
        assert allowed[2] == [tokenizer.eot, *range(begin + 200, begin + 500)]
    # inside a segment (text next, or a timestamp to close it) nothing changes
    open_row = RowState.start(1, torch.device("cpu"), ends[:1])
    for token in [begin, *text]:
        open_row.advance(torch.tensor([token]), begin)
    unbounded = RowState.start(1, torch.device("cpu"))
    for token in [begin, *text]:
        unbounded.advance(torch.tensor([token]), begin)
    bounded, plain = torch.zeros(1, vocab), torch.zeros(1, vocab)
    rules.apply(bounded, open_row)
    rules.apply(plain, unbounded)
    assert torch.equal(bounded.isinf(), plain.isinf())
