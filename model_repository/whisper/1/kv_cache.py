"""The decoder's key/value cache for a batch, allocated once and written in place, and the
order in which rows that go on decoding are moved to its front."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class KeyValueCache:
    """Keys and values of every decoder layer for a batch, head-major (layer × row × head ×
    position × head width, so attention reads each row's positions contiguously):
    self-attention over text positions, written step by step, and cross-attention over audio
    positions, written once.

    Row i of the batch lives in row i of these tensors; when rows finish, the rows still
    decoding move to the front, in place (CUDA graphs hold these tensors' addresses): each
    finished row's slot there takes a row from the back (`compacted_order`), so only those rows
    are copied, not every row behind the first finished one. The cross-attention part is not
    zeroed when made: `write_cross` fills each row, its padding included."""

    def __init__(
        self,
        layers: int,
        rows: int,
        heads: int,
        text_ctx: int,
        audio_ctx: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.rows = rows
        head_width = width // heads
        self.self_keys = torch.zeros(
            layers, rows, heads, text_ctx, head_width, dtype=dtype, device=device
        )
        self.self_values = torch.zeros_like(self.self_keys)
        # 8 rows of tiny.en's 30 s windows: 147 MB, which zeroing would write once more
        self.cross_keys = torch.empty(
            layers, rows, heads, audio_ctx, head_width, dtype=dtype, device=device
        )
        self.cross_values = torch.empty_like(self.cross_keys)

    @property
    def audio_ctx(self) -> int:
        return self.cross_keys.shape[3]

    def fits(self, rows: int, audio_ctx: int, dtype: torch.dtype) -> bool:
        return rows <= self.rows and audio_ctx <= self.audio_ctx and dtype == self.self_keys.dtype

    def write_cross(self, contexts: Sequence[torch.Tensor]) -> None:
        """Each row's cross-attention keys and values (`WhisperDecoder.audio_contexts`), and
        zeros over the positions past a shorter row's own (masked, but must be finite)."""
        for row, context in enumerate(contexts):
            positions = context.shape[3]
            self.cross_keys[:, row, :, :positions] = context[:, 0]
            self.cross_values[:, row, :, :positions] = context[:, 1]
            if positions < self.audio_ctx:
                self.cross_keys[:, row, :, positions:] = 0
                self.cross_values[:, row, :, positions:] = 0

    def keep(self, order: torch.Tensor, text_length: int) -> None:
        """Make the front rows those of `compacted_order`: copy the rows it moves (a finished
        row's slot gets a row from the back); the text cache only up to `text_length`."""
        targets = (order != torch.arange(order.numel(), device=order.device)).nonzero()[:, 0]
        if targets.numel() == 0:
            return
        sources = order[targets]
        for tensor in (self.self_keys, self.self_values):
            tensor[:, targets, :, :text_length] = tensor[:, sources, :, :text_length]
        for tensor in (self.cross_keys, self.cross_values):
            tensor[:, targets] = tensor[:, sources]


def compacted_order(finished: torch.Tensor) -> torch.Tensor:
    """The rows that go on decoding, as indices into the current rows, in their new order:
    a row still decoding among the first (as many as go on) stays where it is, and each
    finished one there is replaced by one from the back. Rows' order does not matter to
    the decode (each row carries its request's index), but copying a row's cache does:
    18 MB of cross-attention keys and values per 30 s window of tiny.en."""
    going_on = (~finished).nonzero()[:, 0]
    count = going_on.numel()
    order = torch.arange(count, device=finished.device)
    order[finished[:count]] = going_on[going_on >= count]
    return order
