"""Load the Whisper checkpoint that `python -m export` wrote beside this file.

The export writes `weights/<name>.pt` and a manifest `weights/<name>.json`; the manifest is
the contract between the two (dims, sha256, alignment heads), so loading never guesses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from whisper.model import LayerNorm, Linear, ModelDimensions, Whisper

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_HASH_CHUNK_BYTES = 1 << 20


class WeightsError(RuntimeError):
    """The exported weights are missing, incomplete or do not match their manifest."""


@dataclass(frozen=True)
class LoadedModel:
    model: Whisper
    manifest: dict[str, Any]
    device: torch.device
    fp16: bool
    int8: bool = False


def resolve_device(setting: str) -> torch.device:
    """Map the config's `device` parameter ("auto", "cpu", "cuda", "cuda:N") to a device."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WeightsError(f"device {setting!r} requested but CUDA is not available")
    return device


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(name: str, weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    manifest_path = weights_dir / f"{name}.json"
    if not manifest_path.is_file():
        raise WeightsError(
            f"no exported weights named {name!r} in {weights_dir} (run: python -m export {name})"
        )
    try:
        return json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"unreadable manifest {manifest_path}: {exc}") from exc


def alignment_mask(heads: list[list[int]], dims: ModelDimensions) -> torch.Tensor:
    """The cross-attention heads used for word timing, as the sparse mask Whisper expects."""
    mask = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return mask.to_sparse()


def quantize_linear_layers(model: Whisper) -> Whisper:
    """int8 weights for every linear layer, activations quantized as each product runs
    (torch's dynamic quantization, fbgemm kernels): on a CPU without bfloat16 the encoder's
    and decoder's matrix products are most of the work, and int8 is what faster-whisper
    serves on a CPU. The convolutions, attention, layer norms and the vocabulary projection
    (the token embedding, per-tensor activation scales ruined its text) stay float32. CPU
    only, in place."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, Linear):  # openai-whisper's own subclass, which torch
                plain = torch.nn.Linear(
                    child.in_features, child.out_features, bias=child.bias is not None
                )
                plain.weight, plain.bias = child.weight, child.bias  # does not quantize
                setattr(module, name, plain)
    return quantized_int8(model)


def quantized_int8(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with its `torch.nn.Linear` layers (or itself, if it is one) in int8."""
    with warnings.catch_warnings():
        # torch 2.10+ points eager-mode quantization to torchao, which we do not depend on;
        # the API works throughout the torch versions the project accepts (< 2.14)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        if isinstance(module, torch.nn.Linear):  # torch swaps a module's children, not itself
            return torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(module), {torch.nn.Linear}, dtype=torch.qint8
            )[0]
        return torch.ao.quantization.quantize_dynamic(
            module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )


def half_precision(model: Whisper) -> Whisper:
    """fp16 weights, except the layer norms: openai-whisper's `LayerNorm` normalises in float32
    (it casts its input up and the result back), so its own weights must stay float32."""
    model.half()
    for module in model.modules():
        if isinstance(module, LayerNorm):
            module.float()
    return model


def load_model(
    name: str,
    device: torch.device,
    *,
    weights_dir: Path = WEIGHTS_DIR,
    verify_sha256: bool = True,
    int8: bool = False,
) -> LoadedModel:
    """Build the Whisper module from an export: fp16 on CUDA, fp32 on CPU (with `int8`, its
    linear layers in int8: see `quantize_linear_layers`)."""
    manifest = read_manifest(name, weights_dir)
    weights_path = weights_dir / manifest["weights_file"]
    if not weights_path.is_file():
        raise WeightsError(f"manifest {name!r} names {weights_path}, which is missing")
    if verify_sha256 and file_sha256(weights_path) != manifest["sha256"]:
        raise WeightsError(f"{weights_path} does not match the sha256 in its manifest")
    checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    dims = ModelDimensions(**checkpoint["dims"])
    model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"])
    model.register_buffer(
        "alignment_heads", alignment_mask(manifest["alignment_heads"], dims), persistent=False
    )
    fp16 = device.type == "cuda"
    model = (half_precision(model) if fp16 else model.float()).to(device).eval()
    int8 = int8 and device.type == "cpu"
    if int8:
        quantize_linear_layers(model)
    logger.info(
        "loaded Whisper %s (%s) on %s, fp16=%s, int8=%s",
        name,
        manifest["dtype"],
        device,
        fp16,
        int8,
    )
    return LoadedModel(model=model, manifest=manifest, device=device, fp16=fp16, int8=int8)
