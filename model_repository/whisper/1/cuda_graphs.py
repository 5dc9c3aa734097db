"""The decoder's one-token step captured as CUDA graphs, one per batch-size bucket, so that a
token costs one launch instead of a few dozen small kernels launched from Python."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import torch
from kv_cache import KeyValueCache

LOGGER = logging.getLogger(__name__)
GRAPH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

# tokens (rows × 1), positions (rows), cache, cross-attention mask (rows × 1 × 1 × audio
# positions) -> logits (rows × vocabulary), with shapes fixed by the rows alone
StaticStep = Callable[[torch.Tensor, torch.Tensor, KeyValueCache, torch.Tensor], torch.Tensor]


class Replayable(Protocol):
    def replay(self) -> None: ...


# How a step is captured: a recording to replay and the tensor each replay writes its output
# to. `capture_cuda_graph` on CUDA; tests on a CPU pass a stand-in that replays the step
# eagerly into the same tensor, which exercises everything here but the recording itself.
Capture = Callable[[Callable[[], torch.Tensor]], tuple[Replayable, torch.Tensor]]


def capture_cuda_graph(step: Callable[[], torch.Tensor]) -> tuple[Replayable, torch.Tensor]:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up runs outside the graph (kernel selection, workspaces)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = step()
    return graph, logits


def bucket_for(rows: int) -> int | None:
    """The smallest bucket that holds `rows`; None beyond the largest."""
    return next((bucket for bucket in GRAPH_BUCKETS if bucket >= rows), None)


class GraphedSteps:
    """`step` captured per bucket, replayed with the batch's tokens, positions and
    cross-attention mask copied into fixed buffers. Rows beyond the batch in a bucket compute
    on stale values and are ignored. The graphs hold the addresses of `cache`'s tensors and of
    these buffers, so they live as long as the cache."""

    def __init__(
        self,
        step: StaticStep,
        cache: KeyValueCache,
        device: torch.device,
        capture: Capture = capture_cuda_graph,
    ) -> None:
        self.step, self.cache, self.capture = step, cache, capture
        capacity = cache.rows
        self.tokens = torch.zeros(capacity, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.cross_mask = torch.ones(
            capacity, 1, 1, cache.audio_ctx, dtype=torch.bool, device=device
        )
        self.graphs: dict[int, tuple[Replayable, torch.Tensor]] = {}

    def _bucket_step(self, bucket: int) -> torch.Tensor:
        return self.step(
            self.tokens[:bucket], self.positions[:bucket], self.cache, self.cross_mask[:bucket]
        )

    def run(
        self, tokens: torch.Tensor, positions: torch.Tensor, cross_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits after one token per row (at most the largest bucket's rows)."""
        rows = tokens.shape[0]
        bucket = bucket_for(rows)
        if bucket is None:
            raise ValueError(f"{rows} rows: more than the largest graph bucket")
        self.tokens[:rows, 0] = tokens
        self.positions[:rows] = positions
        if cross_mask is None:
            self.cross_mask[:rows] = True
        else:
            self.cross_mask[:rows] = cross_mask
        if bucket not in self.graphs:  # once per bucket and cache
            self.graphs[bucket] = self.capture(lambda: self._bucket_step(bucket))
            LOGGER.info("captured the decoder step for batches of up to %d rows", bucket)
        graph, logits = self.graphs[bucket]
        graph.replay()
        return logits[:rows].clone()
