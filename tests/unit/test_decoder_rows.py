"""How the decode loop compacts its batch when rows finish (model_repository/whisper/1/decoder.py):
the rows still decoding fill the front, and only the rows that must move are copied."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model_repository" / "whisper" / "1"))

from kv_cache import KeyValueCache, compacted_order


@pytest.mark.parametrize(
    ("finished", "order"),
    [
        ([0, 1, 0, 0, 1, 0, 0], [0, 5, 2, 3, 6]),  # two slots in front refilled from the back
        ([0, 0, 0, 1], [0, 1, 2]),  # the last row finished: nothing moves
        ([1, 0, 0, 0], [3, 1, 2]),
        ([1, 1, 0], [2]),
    ],
)
def test_rows_still_decoding_fill_the_slots_of_finished_ones(finished, order) -> None:
    got = compacted_order(torch.tensor(finished, dtype=torch.bool))
    assert got.tolist() == order


def test_the_cache_copies_only_the_rows_that_move() -> None:
    cache = KeyValueCache(2, 5, 2, 6, 4, 8, torch.float32, torch.device("cpu"))
    for tensor in (cache.self_keys, cache.self_values, cache.cross_keys, cache.cross_values):
        tensor.copy_(torch.arange(5, dtype=torch.float32)[None, :, None, None, None])
    order = compacted_order(torch.tensor([False, True, False, False, True]))  # rows 0, 3, 2
    cache.keep(order, text_length=3)
    for tensor in (cache.cross_keys, cache.cross_values):
        assert tensor[0, :3, 0, 0, 0].tolist() == [0.0, 3.0, 2.0]
    for tensor in (cache.self_keys, cache.self_values):
        assert tensor[1, :3, 1, 2, 3].tolist() == [0.0, 3.0, 2.0]  # written text positions
        assert tensor[1, 1, 1, 3, 3].item() == 1.0  # past `text_length`: not copied


def test_a_shorter_rows_padding_is_zeroed_in_the_cross_cache() -> None:
    cache = KeyValueCache(1, 2, 1, 4, 6, 2, torch.float32, torch.device("cpu"))
    cache.cross_keys.fill_(float("nan"))
    cache.cross_values.fill_(float("nan"))
    short = torch.ones(1, 2, 1, 4, 2)  # layers × keys/values × heads × 4 positions × width
    cache.write_cross([torch.ones(1, 2, 1, 6, 2), short])
    assert torch.isfinite(cache.cross_keys).all() and torch.isfinite(cache.cross_values).all()
    assert cache.cross_keys[0, 1, 0, 4:].abs().sum() == 0
