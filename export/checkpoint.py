"""The openai-whisper checkpoint format: loading, strict validation, alignment heads."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from .errors import ExportError

logger = logging.getLogger(__name__)

# The multilingual tokenizer adds language tokens; English-only vocabularies are 51864 long.
MULTILINGUAL_MIN_VOCAB = 51865

AlignmentHeads = list[list[int]]


@dataclass
class WhisperCheckpoint:
    """Weights in openai-whisper's layout; ``alignment_heads`` is None when the source had none."""

    dims: ModelDimensions
    state_dict: dict[str, torch.Tensor]
    alignment_heads: AlignmentHeads | None = None

    @property
    def dtype(self) -> str:
        return str(self.state_dict["decoder.token_embedding.weight"].dtype).removeprefix("torch.")

    @property
    def multilingual(self) -> bool:
        return bool(self.dims.n_vocab >= MULTILINGUAL_MIN_VOCAB)

    def to_serializable(self) -> dict[str, Any]:
        """The object ``whisper.load_model`` expects to find in a ``.pt`` file."""
        return {"dims": dataclasses.asdict(self.dims), "model_state_dict": self.state_dict}


def make_dims(raw: Any, origin: str) -> ModelDimensions:
    """Build ModelDimensions from a mapping, insisting on exactly its fields as integers."""
    fields = [field.name for field in dataclasses.fields(ModelDimensions)]
    if not isinstance(raw, dict) or sorted(raw) != sorted(fields):
        raise ExportError(f"{origin}: dims must have exactly the fields {', '.join(fields)}")
    try:
        return ModelDimensions(**{key: int(raw[key]) for key in fields})
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{origin}: dims must be integers ({exc})") from exc


def load_checkpoint_file(path: Path) -> WhisperCheckpoint:
    """Load an official-format ``.pt`` file ({"dims", "model_state_dict"})."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    # torch.load raises many unrelated types (UnpicklingError, RuntimeError, EOFError,
    # zipfile errors...) for a file that is not a checkpoint; all mean the same to the user.
    except Exception as exc:
        reason = str(exc).split(". ", 1)[0]  # torch's messages go on with generic advice
        raise ExportError(
            f"{path} is not a Whisper checkpoint (.pt) or CTranslate2 model: {reason}"
        ) from exc
    if not isinstance(raw, dict) or "dims" not in raw or "model_state_dict" not in raw:
        raise ExportError(
            f"{path} is not a Whisper checkpoint: it lacks 'dims' and 'model_state_dict'"
        )
    state_dict = raw["model_state_dict"]
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ExportError(f"{path}: model_state_dict is not a mapping of tensors")
    return WhisperCheckpoint(make_dims(raw["dims"], str(path)), state_dict)


def _summarize(keys: list[str], what: str) -> str:
    return f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"


def validate(checkpoint: WhisperCheckpoint, alignment_heads: AlignmentHeads, origin: str) -> None:
    """Check that the weights load strictly into openai-whisper's model and heads fit it."""
    model = Whisper(checkpoint.dims)
    expected = model.state_dict()
    given = checkpoint.state_dict
    problems: list[str] = []
    if missing := sorted(expected.keys() - given.keys()):
        problems.append(_summarize(missing, "missing tensors"))
    if unexpected := sorted(given.keys() - expected.keys()):
        problems.append(_summarize(unexpected, "unexpected tensors"))
    mismatched = [
        f"{key} {list(given[key].shape)} != {list(expected[key].shape)}"
        for key in sorted(expected.keys() & given.keys())
        if given[key].shape != expected[key].shape
    ]
    if mismatched:
        problems.append(_summarize(mismatched, "shape mismatches"))
    if not_float := sorted(key for key, value in given.items() if not value.is_floating_point()):
        problems.append(_summarize(not_float, "non-float tensors"))
    if problems:
        raise ExportError(f"{origin} does not fit openai-whisper's model: {'; '.join(problems)}")
    model.load_state_dict(given, strict=True)
    bad = [
        pair
        for pair in alignment_heads
        if not (
            0 <= pair[0] < checkpoint.dims.n_text_layer
            and 0 <= pair[1] < checkpoint.dims.n_text_head
        )
    ]
    if bad:
        raise ExportError(f"{origin}: alignment heads {bad} are outside the decoder's layers/heads")


def parse_alignment_heads(raw: Any, origin: str) -> AlignmentHeads:
    """Validate a JSON list of [layer, head] pairs (CTranslate2's config.json format)."""
    if not isinstance(raw, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) for i in pair)
        for pair in raw
    ):
        raise ExportError(
            f"{origin}: alignment_heads must be a list of [layer, head] integer pairs"
        )
    return [list(pair) for pair in raw]


def official_alignment_heads(name: str, dims: ModelDimensions) -> AlignmentHeads | None:
    """Decode whisper's base85+gzip boolean mask for an official model name, if it fits dims."""
    dump = whisper._ALIGNMENT_HEADS.get(name)
    if dump is None:
        return None
    mask = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool)
    if mask.size != dims.n_text_layer * dims.n_text_head:
        logger.warning(
            "official alignment heads of %s do not fit these dimensions; not using them", name
        )
        return None
    pairs = np.argwhere(mask.reshape(dims.n_text_layer, dims.n_text_head))
    return [[int(layer), int(head)] for layer, head in pairs]


def default_alignment_heads(dims: ModelDimensions) -> AlignmentHeads:
    """openai-whisper's default: every head of the last half of the decoder layers."""
    return [
        [layer, head]
        for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
        for head in range(dims.n_text_head)
    ]


def resolve_alignment_heads(checkpoint: WhisperCheckpoint, name: str) -> AlignmentHeads:
    """The source's own heads, else the official ones for ``name``, else whisper's default."""
    if checkpoint.alignment_heads:
        return checkpoint.alignment_heads
    return official_alignment_heads(name, checkpoint.dims) or default_alignment_heads(
        checkpoint.dims
    )
