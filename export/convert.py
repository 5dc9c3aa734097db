"""Convert a CTranslate2 Whisper model directory to an openai-whisper checkpoint."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from whisper.model import ModelDimensions

from .checkpoint import WhisperCheckpoint, parse_alignment_heads
from .ctranslate2_format import CT2Model, read_model_bin
from .errors import ExportError

logger = logging.getLogger(__name__)

# Every official Whisper size uses 64-dimensional attention heads.
HEAD_DIM = 64


class _Variables:
    """CT2 variables handed out once each, so that leftovers can be reported."""

    def __init__(self, model: CT2Model, origin: str) -> None:
        self._variables = model.variables
        self._origin = origin
        self._taken: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._variables

    def take(self, name: str) -> torch.Tensor:
        try:
            tensor = self._variables[name]
        except KeyError as exc:
            raise ExportError(
                f"{self._origin} is not a complete Whisper model: no variable {name}"
            ) from exc
        self._taken.add(name)
        return tensor

    def untaken_tensors(self) -> list[str]:
        """Non-scalar variables not converted (scalars are CT2 runtime options)."""
        return sorted(
            name
            for name, value in self._variables.items()
            if name not in self._taken and value.dim() > 0
        )

    def count_layers(self, stack: str) -> int:
        pattern = re.compile(rf"^{stack}/layer_(\d+)/")
        indices = {
            int(match.group(1)) for name in self._variables if (match := pattern.match(name))
        }
        if indices != set(range(len(indices))) or not indices:
            raise ExportError(f"{self._origin}: {stack} layers are missing or not numbered 0..n-1")
        return len(indices)

    def num_heads(self, stack: str, d_model: int) -> int:
        name = f"{stack}/num_heads"
        if name in self:
            return int(self.take(name).item())
        logger.info("%s has no %s; assuming %d-dimensional heads", self._origin, name, HEAD_DIM)
        return d_model // HEAD_DIM


StateDict = dict[str, torch.Tensor]


def _linear(v: _Variables, src: str, dst: str, out: StateDict) -> None:
    out[f"{dst}.weight"] = v.take(f"{src}/weight")
    out[f"{dst}.bias"] = v.take(f"{src}/bias")


def _layer_norm(v: _Variables, src: str, dst: str, out: StateDict) -> None:
    out[f"{dst}.weight"] = v.take(f"{src}/gamma")
    out[f"{dst}.bias"] = v.take(f"{src}/beta")


def _fused_linear(v: _Variables, src: str, dsts: list[str], out: StateDict) -> None:
    """Split a fused projection. openai-whisper's key projection has no bias: CT2 stores zeros
    there, and a key bias would shift all of a query's logits equally, which softmax ignores."""
    # clone() so that torch.save does not store the whole fused buffer behind each view.
    weights = v.take(f"{src}/weight").chunk(len(dsts))
    biases = v.take(f"{src}/bias").chunk(len(dsts))
    for dst, weight, bias in zip(dsts, weights, biases, strict=True):
        out[f"{dst}.weight"] = weight.clone()
        if not dst.endswith(".key"):
            out[f"{dst}.bias"] = bias.clone()


def _block(v: _Variables, src: str, dst: str, cross_attention: bool, out: StateDict) -> None:
    attn = f"{dst}.attn"
    _fused_linear(
        v, f"{src}/self_attention/linear_0", [f"{attn}.query", f"{attn}.key", f"{attn}.value"], out
    )
    _linear(v, f"{src}/self_attention/linear_1", f"{attn}.out", out)
    _layer_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", out)
    if cross_attention:
        cross = f"{dst}.cross_attn"
        _linear(v, f"{src}/attention/linear_0", f"{cross}.query", out)
        _fused_linear(v, f"{src}/attention/linear_1", [f"{cross}.key", f"{cross}.value"], out)
        _linear(v, f"{src}/attention/linear_2", f"{cross}.out", out)
        _layer_norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", out)
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0", out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2", out)
    _layer_norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)


def _convert_state_dict(
    v: _Variables, n_audio_layer: int, n_text_layer: int, origin: str
) -> StateDict:
    out: StateDict = {}
    _linear(v, "encoder/conv1", "encoder.conv1", out)
    _linear(v, "encoder/conv2", "encoder.conv2", out)
    out["encoder.positional_embedding"] = v.take("encoder/position_encodings/encodings")
    for i in range(n_audio_layer):
        _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", False, out)
    _layer_norm(v, "encoder/layer_norm", "encoder.ln_post", out)

    embedding = v.take("decoder/embeddings/weight")
    out["decoder.token_embedding.weight"] = embedding
    out["decoder.positional_embedding"] = v.take("decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", True, out)
    _layer_norm(v, "decoder/layer_norm", "decoder.ln", out)

    # openai-whisper ties the output projection to the token embedding.
    projection = v.take("decoder/projection/weight")
    if projection is not embedding and not torch.equal(projection, embedding):
        raise ExportError(
            f"{origin}: the output projection differs from the token embedding, "
            "which openai-whisper ties"
        )
    if leftovers := v.untaken_tensors():
        raise ExportError(
            f"{origin} has tensors this converter does not know: {', '.join(leftovers[:5])}"
        )
    return out


def _dims(v: _Variables, out: StateDict, n_audio_layer: int, n_text_layer: int) -> ModelDimensions:
    """Everything but the head counts follows from tensor shapes."""
    n_audio_state, n_mels, _ = out["encoder.conv1.weight"].shape
    n_vocab, n_text_state = out["decoder.token_embedding.weight"].shape
    return ModelDimensions(
        n_mels=n_mels,
        n_audio_ctx=out["encoder.positional_embedding"].shape[0],
        n_audio_state=n_audio_state,
        n_audio_head=v.num_heads("encoder", n_audio_state),
        n_audio_layer=n_audio_layer,
        n_vocab=n_vocab,
        n_text_ctx=out["decoder.positional_embedding"].shape[0],
        n_text_state=n_text_state,
        n_text_head=v.num_heads("decoder", n_text_state),
        n_text_layer=n_text_layer,
    )


def vocabulary_size(directory: Path) -> int:
    """Token count of ``vocabulary.txt`` (one token per line) or ``vocabulary.json`` (a list)."""
    text_file, json_file = directory / "vocabulary.txt", directory / "vocabulary.json"
    try:
        if text_file.is_file():
            data = text_file.read_bytes()
            # CTranslate2 splits on "\n" only; the last line may lack one.
            return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        if json_file.is_file():
            return len(json.loads(json_file.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read the vocabulary in {directory}: {exc}") from exc
    raise ExportError(
        f"{directory} is not a CTranslate2 model directory: no vocabulary.txt or vocabulary.json"
    )


def _config_alignment_heads(directory: Path) -> list[list[int]] | None:
    config_file = directory / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {config_file}: {exc}") from exc
    raw = config.get("alignment_heads") if isinstance(config, dict) else None
    return None if raw is None else parse_alignment_heads(raw, str(config_file))


def convert_ct2_directory(directory: Path, model_bin: Path | None = None) -> WhisperCheckpoint:
    """Read ``directory`` (model.bin, config.json, vocabulary) as an openai-whisper checkpoint.

    ``model_bin`` overrides ``directory / "model.bin"``, for a model.bin rebuilt elsewhere.
    """
    model_bin = model_bin or directory / "model.bin"
    model = read_model_bin(model_bin)
    origin = str(model_bin)
    if model.spec_name != "WhisperSpec":
        raise ExportError(f"{origin} is a CTranslate2 {model.spec_name} model, not Whisper")
    if any(name.endswith("/weight_scale") for name in model.variables):
        raise ExportError(
            f"{origin} is quantized (int8/int16); export a float16 or float32 conversion instead"
        )
    v = _Variables(model, origin)
    n_audio_layer, n_text_layer = v.count_layers("encoder"), v.count_layers("decoder")
    state_dict = _convert_state_dict(v, n_audio_layer, n_text_layer, origin)
    dims = _dims(v, state_dict, n_audio_layer, n_text_layer)
    vocab = vocabulary_size(directory)
    if vocab != dims.n_vocab:
        raise ExportError(
            f"vocabulary mismatch in {directory}: the vocabulary file has {vocab} tokens, "
            f"the model's embedding {dims.n_vocab}"
        )
    return WhisperCheckpoint(dims, state_dict, _config_alignment_heads(directory))
