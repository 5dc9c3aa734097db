"""The speaker model (model_repository/speaker): resemblyzer's voice encoder without resemblyzer.

Its embeddings are compared with the ones resemblyzer 0.1.4 itself computed for each channel of
stereo_diarization.wav (tests/data/resemblyzer_reference.json, computed once with resemblyzer and
librosa installed; this suite installs neither). `TritonPythonModel.execute` runs with a
stand-in for Triton's `triton_python_backend_utils` (as tests/unit/test_model_execute.py does
for Whisper): every request of a batch gets its own answer or its own error. Through the real
Triton: tests/integration/test_speaker_model.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from export.errors import ExportError
from export.speaker import PRETRAINED_SHA256, export_speaker
from gateway.tools.local_triton import LocalTriton, TritonLaunchError

PROJECT = Path(__file__).resolve().parents[2]
MODEL_DIR = PROJECT / "model_repository" / "speaker" / "1"
DATA = PROJECT / "tests" / "data"


class TritonError:
    CANCELLED, INVALID_ARG, INTERNAL = "CANCELLED", "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self.message, self.code = message, code


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None) -> None:
        self.output_tensors, self.error = output_tensors or [], error

    def output(self, name: str) -> np.ndarray:
        (tensor,) = [t for t in self.output_tensors if t.name == name]
        return tensor.array


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class Request:
    def __init__(self, audio: np.ndarray, cancelled: bool = False) -> None:
        self.audio, self.cancelled = audio, cancelled

    def is_cancelled(self) -> bool:
        return self.cancelled


def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
    return Tensor(name, request.audio) if name == "AUDIO" else None


@pytest.fixture(scope="module")
def speaker_weights() -> Path:
    """The voice encoder's export (from the resemblyzer wheel; kept when already valid)."""
    return export_speaker()


@pytest.fixture(scope="module")
def model_module():
    """model.py under its own module name (Whisper's is `model`), with the stand-in."""
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.TritonError, stand_in.InferenceResponse, stand_in.Tensor = (
        TritonError,
        InferenceResponse,
        Tensor,
    )
    stand_in.get_input_tensor_by_name = get_input_tensor_by_name
    stand_in.Logger = types.SimpleNamespace(log_info=lambda message: None)
    saved_path, saved_module = list(sys.path), sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = stand_in
    try:
        spec = importlib.util.spec_from_file_location("speaker_model", MODEL_DIR / "model.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["speaker_model"] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("speaker_model", None)
        if saved_module is None:
            del sys.modules["triton_python_backend_utils"]


def model_config(**parameters: str) -> dict:
    return {"parameters": {key: {"string_value": value} for key, value in parameters.items()}}


@pytest.fixture(scope="module")
def speaker_model(model_module, speaker_weights):
    model = model_module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(model_config(device="cpu"))})
    return model


def channels() -> dict[str, np.ndarray]:
    audio, rate = soundfile.read(DATA / "stereo_diarization.wav", dtype="float32")
    assert rate == 16_000
    return {"left": np.ascontiguousarray(audio[:, 0]), "right": np.ascontiguousarray(audio[:, 1])}


def test_the_embeddings_are_resemblyzers(speaker_model) -> None:
    reference = json.loads((DATA / "resemblyzer_reference.json").read_text())["embeddings"]
    audio = channels()
    first, second = speaker_model.execute(
        [Request(audio["left"][None]), Request(audio["right"][None])]
    )
    for name, response in (("left", first), ("right", second)):
        embedding = response.output("EMBEDDING")[0]
        assert embedding.shape == (256,)
        assert float(embedding @ np.array(reference[name])) >= 0.99, name
    left, right = (response.output("EMBEDDING")[0] for response in (first, second))
    assert float(left @ right) < 0.8  # two people


def test_windows_every_770_ms_cover_the_audio(speaker_model) -> None:
    audio = channels()["left"]  # 5 s
    (response,) = speaker_model.execute([Request(audio[None])])
    windows, starts = response.output("EMBEDDINGS")[0], response.output("WINDOW_STARTS")[0]
    assert windows.shape == (len(starts), 256)
    np.testing.assert_allclose(starts, 0.77 * np.arange(len(starts)), atol=1e-5)
    assert starts[-1] + 1.6 >= 5.0 - 0.8  # the last window holds at least half a window of audio
    np.testing.assert_allclose(np.linalg.norm(windows, axis=1), 1.0, atol=1e-5)
    # the utterance embedding is the windows' mean direction (resemblyzer's partials), without
    # a last window less than 3/4 audio, which embed_utterance leaves out
    mean = windows[:-1].mean(axis=0) if 5.0 - starts[-1] < 0.75 * 1.6 else windows.mean(axis=0)
    assert float(mean / np.linalg.norm(mean) @ response.output("EMBEDDING")[0]) > 0.999


def test_a_bad_request_fails_alone(speaker_model) -> None:
    good = channels()["right"][None]
    nan = good.copy()
    nan[0, 100] = np.nan
    requests = [
        Request(good),
        Request(np.zeros((1, 0), np.float32)),
        Request(nan),
        Request(np.zeros((1, 601 * 16_000), np.float32)),
        Request(good.astype(np.float64)),
        Request(good[0]),
        Request(good, cancelled=True),
        Request(np.concatenate([good, good])),
    ]
    responses = speaker_model.execute(requests)
    assert responses[0].error is None and responses[0].output("EMBEDDINGS").shape[0] == 1
    messages = [response.error.message for response in responses[1:6]]
    assert [response.error.code for response in responses[1:6]] == [TritonError.INVALID_ARG] * 5
    for message, expected in zip(
        messages, ["empty", "NaN", "at most 600 s", "FP32", "shape [batch, samples]"], strict=True
    ):
        assert expected in message
    assert responses[6].error.code == TritonError.CANCELLED
    rows = responses[7].output("EMBEDDING")  # two rows of one request, each answered
    assert rows.shape == (2, 256)
    np.testing.assert_allclose(rows[0], responses[0].output("EMBEDDING")[0], atol=1e-5)


def test_a_batch_of_only_bad_requests_is_answered(speaker_model) -> None:
    (response,) = speaker_model.execute([Request(np.zeros((1, 0), np.float32))])
    assert response.error.code == TritonError.INVALID_ARG


def test_a_request_that_fails_the_encoder_fails_alone(speaker_model, monkeypatch) -> None:
    embed = speaker_model.embed

    def poisoned(audios):
        if any(audio.size == 12_345 for audio in audios):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return embed(audios)

    monkeypatch.setattr(speaker_model, "embed", poisoned)
    good = channels()["left"][None]
    first, poison, third = speaker_model.execute(
        [Request(good), Request(np.ones((1, 12_345), np.float32) * 0.1), Request(good)]
    )
    assert first.error is None and third.error is None
    assert poison.error.code == TritonError.INTERNAL
    assert "illegal memory access" in poison.error.message


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"window_size": "1600"}, "unknown model parameter 'window_size'"),
        ({"window_step_ms": "405"}, "multiple of 10"),
        ({"window_step_ms": "2000"}, "multiple of 10 from 10 to 1600"),
        ({"device": "gpu"}, "auto, cpu, cuda or cuda:N"),
        ({"verify_sha256": "yes"}, "true or false"),
    ],
)
def test_a_bad_parameter_fails_the_load(model_module, parameters, message) -> None:
    with pytest.raises(model_module.ParameterError, match=message):
        model_module.parse_parameters(model_config(**parameters))


def test_weights_that_do_not_match_their_manifest_are_refused(
    model_module, speaker_weights: Path, tmp_path: Path
) -> None:
    sys.path.insert(0, str(MODEL_DIR))
    try:
        import speaker_weights as loader
    finally:
        sys.path.remove(str(MODEL_DIR))
    directory = speaker_weights.parent
    for name in ("resemblyzer.json", "resemblyzer.pt"):
        shutil.copy(directory / name, tmp_path / name)
    encoder, manifest = loader.load_encoder(
        "resemblyzer", torch.device("cpu"), weights_dir=tmp_path
    )
    assert manifest["licence"] == "Apache-2.0" and manifest["source"]["package"] == "resemblyzer"
    with (tmp_path / "resemblyzer.pt").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(loader.WeightsError, match="does not match the sha256"):
        loader.load_encoder("resemblyzer", torch.device("cpu"), weights_dir=tmp_path)
    with pytest.raises(loader.WeightsError, match="python -m export.speaker"):
        loader.load_encoder("other", torch.device("cpu"), weights_dir=tmp_path)


def test_the_export_refuses_a_file_that_is_not_resemblyzers(tmp_path: Path) -> None:
    impostor = tmp_path / "pretrained.pt"
    torch.save({"model_state": {}}, impostor)
    with pytest.raises(ExportError, match=PRETRAINED_SHA256):
        export_speaker(str(impostor), tmp_path / "repository")
    assert not (tmp_path / "repository" / "speaker" / "1" / "weights" / "resemblyzer.json").exists()


def test_the_export_writes_a_manifest_naming_its_source(speaker_weights: Path) -> None:
    manifest = json.loads(speaker_weights.read_text())
    assert manifest["source"]["file_sha256"] == PRETRAINED_SHA256
    assert manifest["source"]["version"] == "0.1.4"
    assert manifest["licence"] == "Apache-2.0"


def test_the_local_launcher_refuses_to_start_without_the_speaker_weights(tmp_path: Path) -> None:
    """Triton would exit on the model it cannot load (--exit-on-error); the launcher says
    which command writes the weights instead, before it starts anything."""
    repository = tmp_path / "repository"
    for model in ("whisper", "speaker"):
        (repository / model / "1").mkdir(parents=True)
        shutil.copy(MODEL_DIR.parents[1] / model / "config.pbtxt", repository / model)
    server = LocalTriton(model_repository=repository, work_dir=tmp_path / "work")
    with pytest.raises(TritonLaunchError, match="python -m export.speaker"):
        server.start()
    assert server.process is None
