"""The Triton model `speaker` (resemblyzer's voice encoder), called directly through the
session's real tritonserver, which serves it beside Whisper."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.modes.audio import SAMPLE_RATE
from testsupport.clips import DATA_DIR

pytestmark = pytest.mark.integration

OUTPUTS = ("EMBEDDINGS", "WINDOW_STARTS", "EMBEDDING")


def embed(client: grpcclient.InferenceServerClient, audio: np.ndarray) -> dict[str, np.ndarray]:
    samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
    tensor = grpcclient.InferInput("AUDIO", list(samples.shape), "FP32")
    tensor.set_data_from_numpy(samples)
    reply = client.infer("speaker", [tensor])
    return {name: reply.as_numpy(name)[0] for name in OUTPUTS}


@pytest.fixture(scope="module")
def voices(clips) -> dict[str, np.ndarray]:
    """Two clips each of JFK and of the Harvard-sentences reader (the halves of their
    recordings), and the stereo clip's two people (one per channel)."""
    jfk, harvard = clips["jfk.flac"].audio, clips["OSR_us_000_0034_8k.wav"].audio
    stereo, rate = soundfile.read(DATA_DIR / "stereo_diarization.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    return {
        "jfk 1": jfk[: jfk.size // 2],
        "jfk 2": jfk[jfk.size // 2 :],
        "harvard 1": harvard[: harvard.size // 2],
        "harvard 2": harvard[harvard.size // 2 :],
        "left": stereo[:, 0],
        "right": stereo[:, 1],
    }


def test_a_speakers_clips_are_closer_than_other_speakers(triton_client, voices) -> None:
    embeddings = {name: embed(triton_client, audio)["EMBEDDING"] for name, audio in voices.items()}

    def similarity(first: str, second: str) -> float:
        return float(embeddings[first] @ embeddings[second])

    same = [similarity("jfk 1", "jfk 2"), similarity("harvard 1", "harvard 2")]
    different = [
        similarity(first, second)
        for first in ("jfk 1", "jfk 2")
        for second in ("harvard 1", "harvard 2", "left", "right")
    ] + [similarity("left", "right"), similarity("harvard 1", "left")]
    assert min(same) > max(different) + 0.05, (same, different)
    assert min(same) >= 0.75


def test_the_windows_follow_a_change_of_speaker(triton_client, voices) -> None:
    """JFK then the Harvard reader in one audio: the windows early on are JFK's, the late ones
    the reader's, each closest to that speaker's own clip."""
    audio = np.concatenate([voices["jfk 1"], voices["harvard 1"][: 6 * SAMPLE_RATE]])
    result = embed(triton_client, audio)
    windows, starts = result["EMBEDDINGS"], result["WINDOW_STARTS"]
    assert windows.shape == (starts.size, 256)
    np.testing.assert_allclose(np.diff(starts), 0.77, atol=1e-5)
    jfk = embed(triton_client, voices["jfk 2"])["EMBEDDING"]
    harvard = embed(triton_client, voices["harvard 2"])["EMBEDDING"]
    change = voices["jfk 1"].size / SAMPLE_RATE
    closer_to_jfk = windows @ jfk > windows @ harvard
    inside_jfk = starts + 1.6 <= change
    inside_harvard = starts >= change
    assert closer_to_jfk[inside_jfk].all()
    assert not closer_to_jfk[inside_harvard].any()


def test_a_bad_request_fails_alone(triton_client, voices) -> None:
    """Bad requests sent at the same moment as good ones (one dynamic batch, where they meet)
    get their own error; the good ones their embeddings."""
    nan = voices["left"].copy()
    nan[10] = np.nan
    too_long = np.zeros(601 * SAMPLE_RATE, np.float32)
    audios = [voices["left"], nan, voices["right"], np.zeros(0, np.float32), too_long]
    with ThreadPoolExecutor(len(audios)) as pool:
        futures = [pool.submit(embed, triton_client, audio) for audio in audios]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result())
        except InferenceServerException as exc:
            outcomes.append(exc.message())
    left, nan_error, right, empty_error, long_error = outcomes
    assert left["EMBEDDING"].shape == right["EMBEDDING"].shape == (256,)
    assert "NaN" in nan_error
    assert "empty" in empty_error
    assert "at most 600 s" in long_error
    assert triton_client.is_model_ready("speaker") and triton_client.is_model_ready("whisper")


def test_embedding_costs_little_beside_transcription(triton_client, voices) -> None:
    """A minute of speech is embedded in well under real time on this CPU."""
    audio = np.tile(voices["harvard 1"], 4)[: 60 * SAMPLE_RATE]
    embed(triton_client, audio[:SAMPLE_RATE])
    began = time.perf_counter()
    result = embed(triton_client, audio)
    elapsed = time.perf_counter() - began
    assert result["EMBEDDINGS"].shape[0] == 77
    assert elapsed < 30, f"{elapsed:.1f} s for 60 s of audio"


def test_the_speaker_model_runs_on_one_cpu_thread(triton_client) -> None:
    """As served: its process shares the cores with Whisper's, and two torch processes with a
    thread per core each slowed both several times over (benchmarks/README.md, "The speaker
    model beside Whisper")."""
    config = triton_client.get_model_config("speaker", as_json=True)["config"]
    assert config["parameters"]["cpu_threads"]["string_value"] == "1"
