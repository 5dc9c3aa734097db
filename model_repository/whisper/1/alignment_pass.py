"""Word timing's decoder pass, computed for a whole batch and handed to openai-whisper's
`whisper.timing.find_alignment` one row at a time."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from whisper.model import Whisper


class AlignmentPass:
    """Stands in for the model inside `whisper.timing.find_alignment` for one row of
    `WhisperDecoder.alignment_passes`: find_alignment hooks each layer's cross-attention and
    calls the model once; here that call hands the hooks the scores already computed for the
    whole batch and returns the row's logits."""

    class _Hooked:
        def __init__(self) -> None:
            self.hooks: list[Callable[..., None]] = []

        def register_forward_hook(self, hook: Callable[..., None]) -> Any:
            self.hooks.append(hook)
            return _Removal(self.hooks, hook)

    def __init__(
        self,
        model: Whisper,
        logits: torch.Tensor | None,
        scores: list[torch.Tensor],
        length: int,
    ) -> None:
        """`logits` of the row's `length` tokens; None where its words' probabilities are not
        wanted: find_alignment is then handed zeros (no memory: one value, expanded), and the
        probabilities it makes of them mean nothing."""
        self.device = model.device
        self.dims = model.dims
        self.alignment_heads = model.alignment_heads
        if logits is None:
            logits = torch.zeros((), device=model.device).expand(length, model.dims.n_vocab)
        self._logits, self._scores = logits, scores
        self.decoder = SimpleNamespace(
            blocks=[SimpleNamespace(cross_attn=self._Hooked()) for _ in scores]
        )

    def __call__(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        for block, scores in zip(self.decoder.blocks, self._scores, strict=True):
            for hook in block.cross_attn.hooks:
                hook(block.cross_attn, (), (None, scores[None]))  # outputs: (attended, scores)
        return self._logits[None]


class _Removal:
    def __init__(self, hooks: list, hook: Callable[..., None]) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        self._hooks.remove(self._hook)
