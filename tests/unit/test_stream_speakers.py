"""The speaker of each final of a live stream: the audio it keeps, what it sends the speaker
model, and what a final gets when its audio is gone or the model fails."""

from __future__ import annotations

import numpy as np

from gateway.core.contract import AsrUnavailable, SpeakerEmbeddings
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_speakers import KEEP_SECONDS, StreamSpeakers


class Voices:
    """A speaker model whose voice is the audio's level: 0.1 is one voice, 0.5 another."""

    def __init__(self) -> None:
        self.heard: list[float] = []  # seconds of audio per request
        self.failure: Exception | None = None

    async def embed_speakers(self, audio: np.ndarray) -> SpeakerEmbeddings:
        self.heard.append(audio.size / SAMPLE_RATE)
        if self.failure is not None:
            raise self.failure
        embedding = np.zeros((1, 4), np.float32)
        embedding[0, 0 if float(np.abs(audio).mean()) < 0.3 else 1] = 1.0
        return SpeakerEmbeddings(embedding, np.zeros(1, np.float32))


def voice(level: float, seconds: float) -> np.ndarray:
    return np.full(int(seconds * SAMPLE_RATE), level, np.float32)


def final(start: float, end: float) -> dict:
    return {"type": "final", "text": " words", "start": start, "end": end}


async def test_each_final_gets_the_speaker_of_its_own_audio() -> None:
    model = Voices()
    speakers = StreamSpeakers(model)
    for level in (0.1, 0.5, 0.1):
        speakers.append(voice(level, 3.0))
    messages = [final(0.0, 3.0), {"type": "partial", "text": " more"}, final(3.0, 6.0)]
    labelled = await speakers.label(messages)
    assert [m.get("speaker") for m in labelled] == ["A", None, "B"]
    assert (await speakers.label([final(6.0, 9.0)]))[0]["speaker"] == "A"
    assert model.heard == [3.0, 3.0, 3.0]


async def test_a_short_final_is_heard_with_the_audio_after_it() -> None:
    model = Voices()
    speakers = StreamSpeakers(model)
    speakers.append(voice(0.1, 3.0))
    await speakers.label([final(0.0, 0.5), final(2.5, 3.0)])
    assert model.heard == [1.6, 0.5]  # the second has only 0.5 s after its start


async def test_audio_older_than_kept_gives_the_previous_speaker() -> None:
    model = Voices()
    speakers = StreamSpeakers(model)
    speakers.append(voice(0.5, 3.0))
    assert (await speakers.label([final(0.0, 3.0)]))[0]["speaker"] == "A"
    speakers.append(voice(0.1, KEEP_SECONDS))  # the first 3 s are no longer kept
    assert speakers.audio(0.0, 3.0).size == 0
    assert (await speakers.label([final(0.0, 3.0)]))[0]["speaker"] == "A"
    assert len(model.heard) == 1


async def test_a_final_the_model_fails_on_has_no_speaker() -> None:
    model = Voices()
    model.failure = AsrUnavailable("speaker model down")
    speakers = StreamSpeakers(model)
    speakers.append(voice(0.1, 3.0))
    (message,) = await speakers.label([final(0.0, 3.0)])
    assert "speaker" not in message
    model.failure = None
    assert (await speakers.label([final(0.0, 3.0)]))[0]["speaker"] == "A"
