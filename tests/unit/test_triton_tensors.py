"""The gateway's side of the model's contract: which inputs a window's options become."""

from __future__ import annotations

import json

import numpy as np

from gateway.backend.triton_tensors import build_inputs
from gateway.core.contract import TranscribeOptions
from gateway.core.transcript import Segment

ALWAYS = ["AUDIO", "TASK", "TEMPERATURE", "WORD_TIMESTAMPS"]
SWITCHES = {"LOGPROBS", "LOW_LATENCY", "SHORT_CONTEXT"}


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


class Recorded:
    """An `InferInput` that keeps what it was given."""

    def __init__(self, name: str, shape: list[int], datatype: str) -> None:
        self.name, self.shape, self.datatype = name, shape, datatype
        self.array: np.ndarray | None = None

    def set_data_from_numpy(self, array: np.ndarray) -> None:
        assert list(array.shape) == self.shape
        self.array = array


def test_switches_are_sent_as_true_booleans() -> None:
    options = TranscribeOptions(short_context=True, logprobs=True)
    inputs = build_inputs(np.zeros(1600, np.float32), options, factory=Recorded)
    switches = {i.name: (i.datatype, i.array.tolist()) for i in inputs if i.name in SWITCHES}
    assert switches == {"LOGPROBS": ("BOOL", [[True]]), "SHORT_CONTEXT": ("BOOL", [[True]])}


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
