"""The gateway's side of the model's contract: which inputs a window's options become, and
what it makes of the model's reply."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.backend.triton_tensors import build_inputs, parse_outputs, required_output
from gateway.core.contract import AsrFailed, TranscribeOptions
from gateway.core.transcript import Segment

ALWAYS = ["AUDIO", "TASK", "TEMPERATURE", "WORD_TIMESTAMPS"]
SWITCHES = {"WORD_TIMES_ONLY", "LOGPROBS", "LOW_LATENCY", "SHORT_CONTEXT"}


def names(options: TranscribeOptions) -> list[str]:
    return [tensor.name() for tensor in build_inputs(np.zeros(1600, np.float32), options)]


def test_a_file_window_sends_no_switch() -> None:
    assert names(TranscribeOptions()) == ALWAYS


def test_a_streams_step_and_its_end_read_send_their_switches() -> None:
    step = TranscribeOptions(language="en", word_timestamps=True, low_latency=True)
    end = TranscribeOptions(language="en", word_timestamps=True, short_context=True)
    # a step sends DRAFT even without one (an empty list): Triton batches only requests
    # with the same inputs
    assert names(step) == ["AUDIO", "TASK", "LANGUAGE", "DRAFT", *ALWAYS[2:], "LOW_LATENCY"]
    assert names(end) == ["AUDIO", "TASK", "LANGUAGE", *ALWAYS[2:], "SHORT_CONTEXT"]
    assert names(TranscribeOptions(logprobs=True)) == [*ALWAYS, "LOGPROBS"]


def test_a_diarized_windows_words_are_asked_for_their_times_only() -> None:
    diarized = TranscribeOptions(word_timestamps=True, word_times_only=True)
    assert names(diarized) == [*ALWAYS, "WORD_TIMES_ONLY"]


class Recorded:
    """An `InferInput` that keeps what it was given."""

    def __init__(self, name: str, shape: list[int], datatype: str) -> None:
        self.name, self.shape, self.datatype = name, shape, datatype
        self.array: np.ndarray | None = None

    def set_data_from_numpy(self, array: np.ndarray) -> None:
        assert list(array.shape) == self.shape
        self.array = array


def test_switches_are_sent_as_true_booleans() -> None:
    options = TranscribeOptions(short_context=True, logprobs=True, word_times_only=True)
    inputs = build_inputs(np.zeros(1600, np.float32), options, factory=Recorded)
    switches = {i.name: (i.datatype, i.array.tolist()) for i in inputs if i.name in SWITCHES}
    assert switches == {
        name: ("BOOL", [[True]]) for name in ("WORD_TIMES_ONLY", "LOGPROBS", "SHORT_CONTEXT")
    }


def test_a_draft_is_sent_with_its_decodes_own_times() -> None:
    """DRAFT carries each segment's timestamps (what the decode wrote), not its start and
    end, which word timing moved to the words; the reply's JSON keeps those internal."""
    moved = Segment.from_json(
        {
            "start": 0.32,
            "end": 2.1,
            "text": " one two",
            "tokens": [530, 734],
            "avg_logprob": -0.2,
            "no_speech_prob": 0.01,
            "compression_ratio": 1.0,
            "temperature": 0.0,
            "complete": False,
            "timestamps": [0.0, 2.4],
        }
    )
    inputs = build_inputs(
        np.zeros(1600, np.float32), TranscribeOptions(draft=(moved,)), factory=Recorded
    )
    (draft,) = [tensor for tensor in inputs if tensor.name == "DRAFT"]
    assert (draft.datatype, draft.shape) == ("BYTES", [1, 1])
    assert json.loads(draft.array[0, 0]) == [
        {"start": 0.0, "end": 2.4, "tokens": [530, 734], "complete": False}
    ]
    assert "timestamps" not in moved.to_json(0)
    assert moved.shifted(1.0).timestamps == (1.0, 3.4)
    assert "DRAFT" not in names(TranscribeOptions())


def test_words_without_a_probability_have_none() -> None:
    """A live step that did not ask for logprobs gets its words without `probability`."""
    segment = Segment.from_json(
        {
            "start": 0.0,
            "end": 1.0,
            "text": " one two",
            "avg_logprob": -0.2,
            "no_speech_prob": 0.01,
            "compression_ratio": 1.0,
            "temperature": 0.0,
            "words": [
                {"word": " one", "start": 0.1, "end": 0.4},
                {"word": " two", "start": 0.5, "end": 0.9, "probability": 0.75},
            ],
        }
    )
    assert [word.probability for word in segment.words] == [None, 0.75]
    assert [word.shifted(1.0).probability for word in segment.words] == [None, 0.75]


class Reply:
    """An `InferResult` holding these outputs (each a string; None: absent)."""

    def __init__(self, **outputs: str | None) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray | None:
        value = self.outputs.get(name)
        return None if value is None else np.array([[value.encode()]], dtype=np.object_)


SEGMENT = {
    "start": 0.0,
    "end": 1.5,
    "text": " Hello.",
    "avg_logprob": -0.2,
    "no_speech_prob": 0.01,
    "compression_ratio": 1.1,
    "temperature": 0.0,
}


def test_a_reply_becomes_typed_segments() -> None:
    reply = Reply(TEXT=" Hello.", LANGUAGE="en", SEGMENTS=json.dumps([SEGMENT]))
    result = parse_outputs(reply)
    assert (result.text, result.language) == (" Hello.", "en")
    assert [(s.start, s.end, s.text) for s in result.segments] == [(0.0, 1.5, " Hello.")]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"TEXT": "", "LANGUAGE": "en"}, "the model's reply has no SEGMENTS"),
        ({"TEXT": "", "LANGUAGE": "en", "SEGMENTS": "[{"}, "the model's reply is malformed"),
        ({"TEXT": "", "LANGUAGE": "en", "SEGMENTS": '[{"start": 0}]'}, "is malformed: KeyError"),
        ({"LANGUAGE": "en", "SEGMENTS": "[]"}, "the model's reply has no TEXT"),
    ],
    ids=["no-segments", "not-json", "segment-without-fields", "no-text"],
)
def test_a_reply_missing_an_output_or_malformed_is_the_models_failure(outputs, message) -> None:
    """Seen from a Triton whose Python backend crashed under load with requests in flight: a
    reply without its outputs. It fails the window as the model's fault (the stream reports
    it and goes on), not with an AttributeError that ended the WebSocket's handler."""
    with pytest.raises(AsrFailed, match=message):
        parse_outputs(Reply(**outputs))


def test_an_output_the_reply_lacks_is_the_models_failure() -> None:
    """The speaker model's reply too (`required_output`)."""
    assert required_output(Reply(TEXT="x"), "TEXT").shape == (1, 1)
    with pytest.raises(AsrFailed, match="the model's reply has no EMBEDDINGS"):
        required_output(Reply(TEXT="x"), "EMBEDDINGS")
