"""Stream configuration, frame decoding and the rules for what becomes final (the parts of
real-time mode that need no model)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.contract import AsrUnavailable, Priority, WindowResult
from gateway.core.transcript import Segment, Word
from gateway.modes.stream_input import FrameDecoder, StreamConfig, StreamProtocolError
from gateway.modes.stream_messages import StreamMessages
from gateway.modes.streaming import StreamSession
from gateway.modes.vad import CONTEXT_SAMPLES, StreamingVad, StreamScorer
from testsupport.clips import DATA_DIR, load_audio
from testsupport.scripted_backend import Call, ScriptedBackend


def test_defaults_are_16k_mono_pcm16() -> None:
    config = StreamConfig.from_message({"type": "config"})
    assert (config.sample_rate, config.encoding, config.channels) == (16000, "pcm_s16le", 1)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"sample_rate": 4000}, "sample_rate must be"),
        ({"sample_rate": "16000"}, "sample_rate must be"),
        ({"encoding": "mp3"}, "encoding must be one of"),
        ({"channels": 0}, "channels must be"),
        ({"language": 5}, "language must be a string"),
        ({"bitrate": 5}, "unknown config fields: bitrate"),
        ({"hotwords": "Triton"}, "hotwords must be a list of strings"),
        ({"hotwords": ["x" * 65]}, "hotwords: at most 50, each at most 64 characters"),
        ({"hotwords": ["w"] * 51}, "hotwords: at most 50"),
    ],
)
def test_bad_configs_say_what_is_wrong(message, error) -> None:
    with pytest.raises(StreamProtocolError, match=error):
        StreamConfig.from_message({"type": "config", **message})


def test_pcm16_frames_become_floats() -> None:
    decoder = FrameDecoder(StreamConfig())
    samples = decoder.decode(np.array([0, 16384, -32768], "<i2").tobytes())
    assert samples.dtype == np.float32 and list(samples) == [0.0, 0.5, -1.0]


def test_hotwords_come_before_the_prompt_in_the_models_context() -> None:
    config = StreamConfig.from_message(
        {"type": "config", "hotwords": [" Triton ", "", "Whisper"], "prompt": "A talk."}
    )
    assert config.hotwords == ("Triton", "Whisper")
    assert config.model_prompt == "Triton, Whisper A talk."
    assert StreamConfig().model_prompt is None


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_frames_decode_as_the_standard_says(encoding) -> None:
    audioop = pytest.importorskip("audioop")  # the standard library's G.711 (to Python 3.12)
    every_byte = bytes(range(256))
    expected = {"pcm_mulaw": audioop.ulaw2lin, "pcm_alaw": audioop.alaw2lin}[encoding]
    linear = np.frombuffer(expected(every_byte, 2), "<i2") / 32768.0
    decoder = FrameDecoder(StreamConfig(encoding=encoding, sample_rate=16000))
    assert np.array_equal(decoder.decode(every_byte), linear.astype(np.float32))


def test_stereo_f32_is_averaged_and_resampled() -> None:
    decoder = FrameDecoder(StreamConfig(sample_rate=48000, encoding="f32le", channels=2))
    stereo = np.stack([np.full(4800, 0.2), np.full(4800, 0.4)], axis=1).astype("<f4")
    out = np.concatenate([decoder.decode(stereo.tobytes()), decoder.flush()])
    assert abs(out.size - 1600) <= 2  # 0.1 s at 16 kHz
    assert np.allclose(out[200:-200], 0.3, atol=1e-3)


@pytest.mark.parametrize(
    ("config", "data", "error"),
    [
        (StreamConfig(), b"\x00\x01\x02", "not a whole number"),
        (StreamConfig(encoding="f32le"), np.array([np.nan], "<f4").tobytes(), "NaN"),
        (StreamConfig(channels=2), b"\x00" * 6, "not a whole number"),
    ],
)
def test_malformed_frames_are_refused(config, data, error) -> None:
    with pytest.raises(StreamProtocolError, match=error):
        FrameDecoder(config).decode(data)


def test_a_backlog_beyond_one_window_is_dropped_and_reported() -> None:
    """A stream 40 s ahead of the model keeps the newest 30 s; words heard before the cut
    are committed; the stretch never heard is reported as skipped."""
    session = StreamSession(backend=None, config=StreamConfig(), min_new_audio_s=0.5)
    session.append(np.zeros(40 * 16000, np.float32))
    session.heard_until = 6.0
    session.agreement.insert([Word(" heard", 4.0, 5.0, 0.9), Word(" later", 12.0, 12.5, 0.9)])
    messages = session.drop_backlog("overload")
    assert messages == [
        {"type": "final", "text": " heard", "start": 4.0, "end": 5.0},
        {"type": "skipped", "start": 6.0, "end": 10.0, "reason": "overload"},
    ]
    assert session.audio.start == 10.0 and session.audio.samples.size == 30 * 16000
    assert session.drop_backlog("overload") == []


def test_words_committed_across_a_long_pause_become_a_final_each_side() -> None:
    """After an outage or at a stream's end one commit can hold two utterances: a final each,
    with its own times, where a pause of 3 s or more lies between them."""
    messages = StreamMessages()
    words = [
        Word(" ask", 1.0, 1.4, 0.9),
        Word(" not.", 1.5, 2.0, 0.9),
        Word(" And", 4.9, 5.2, 0.9),  # 2.9 s after: the same final
        Word(" so.", 5.3, 5.6, 0.9),
        Word(" A", 8.6, 8.8, 0.9),  # 3.0 s after: a final of its own
        Word(" ring.", 8.9, 9.3, 0.9),
    ]
    assert messages.finals(words) == [
        {"type": "final", "text": " ask not. And so.", "start": 1.0, "end": 5.6},
        {"type": "final", "text": " A ring.", "start": 8.6, "end": 9.3},
    ]
    assert messages.final_end == 9.3
    assert messages.finals([]) == []


def test_a_buffer_within_one_window_is_kept() -> None:
    session = StreamSession(backend=None, config=StreamConfig(), min_new_audio_s=0.5)
    session.append(np.zeros(29 * 16000, np.float32))
    assert session.drop_backlog("model_unavailable") == []
    assert session.audio.samples.size == 29 * 16000


# ---- when words become final -------------------------------------------------------------
# A scripted model: it "hears" the words whose audio has fully arrived; a scripted detector:
# loud noise is speech. The commit rules are what is tested here.

RATE = 16000
SPEECH_WORDS = [Word(f" w{i}", 0.2 + i * 0.6, 0.6 + i * 0.6, 0.9) for i in range(40)]


def sound(seconds: float, loud: bool, seed: int = 0) -> np.ndarray:
    """Noise: faint, or loud with syllable-like swells (the detector wants contrast)."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32)
    if not loud:
        return noise * 1e-4
    swells = 0.02 + np.abs(np.sin(2 * np.pi * 2.0 * np.arange(noise.size) / RATE))
    return (noise * 0.3 * swells).astype(np.float32)


class LoudnessScorer(StreamScorer):
    """Frames louder than -40 dBFS are speech."""

    def score(self, inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = inputs[:, CONTEXT_SAMPLES:]
        return (np.sqrt(np.mean(frames**2, axis=1)) > 0.01).astype(np.float32), state


class ScriptedModel:
    """Returns the words of `words` (stream time) that lie inside the speech it is sent."""

    def __init__(self, words: list[Word], speech_until: list[float]) -> None:
        self.words = words
        self.speech_until = speech_until  # the end of each stretch of speech, stream time
        self.session: StreamSession | None = None
        self.calls = 0
        self.arriving: list[np.ndarray] = []  # frames that come in while the model works
        self.avg_logprob = -0.1  # below -1: the hypothesis fails Whisper's checks
        self.leaves_out_cut_off = False  # as Whisper does: no words of speech cut off at the end
        self.loops = False  # its last three words written again three times, in no time
        # what it writes, as Whisper does, when it hears none of the words: e.g. "Thank you."
        self.makes_up: str | None = None
        self.no_speech_prob = 0.01  # the window's, as the model reports it on every segment
        self.heard: list[tuple[float, float]] = []  # stream time of each call's audio
        self.priorities: list[Priority] = []
        self.drafts: list[tuple[Segment, ...]] = []  # each call's draft
        self.replies: list[tuple[Segment, ...]] = []  # each call's segments (window time)

    async def transcribe(self, audio, options, *, priority):
        assert options.low_latency and options.word_timestamps
        self.calls += 1
        self.priorities.append(priority)
        self.drafts.append(options.draft)
        for frames in self.arriving:
            self.session.append(frames)
        self.arriving = []
        start = self.session.audio.start
        end = start + audio.size / RATE
        self.heard.append((start, end))

        def stretch_end(word: Word) -> float:
            return min((s for s in self.speech_until if word.end <= s), default=float("inf"))

        heard = [
            Word(w.word, w.start - start, w.end - start, w.probability)
            for w in self.words
            if w.start >= start
            and w.end <= end
            and stretch_end(w) <= (end if self.leaves_out_cut_off else float("inf"))
        ]
        if self.loops and heard:
            at = heard[-1].end
            heard += [Word(w.word, at, at, 0.1) for w in heard[-3:] * 3]
        if self.makes_up and not heard:
            heard = [Word(self.makes_up, 0.0, audio.size / RATE - 0.1, 0.5)]
        segment = (
            Segment(
                heard[0].start,
                heard[-1].end,
                "".join(w.word for w in heard),
                self.avg_logprob,
                self.no_speech_prob,
                1.0,
                0.0,
                words=tuple(heard),
            )
            if heard
            else None
        )
        self.replies.append((segment,) if segment else ())
        return WindowResult(text="", language="en", segments=self.replies[-1])


def scripted_session(speech: list[tuple[float, float]]) -> tuple[StreamSession, ScriptedModel]:
    words = [w for w in SPEECH_WORDS if any(a <= w.start and w.end <= b for a, b in speech)]
    model = ScriptedModel(words, [b for _, b in speech])
    session = StreamSession(
        model, StreamConfig(), min_new_audio_s=0.5, vad=StreamingVad(scorer=LoudnessScorer())
    )
    model.session = session
    return session, model


def finals(messages: list[dict]) -> str:
    return "".join(m["text"] for m in messages if m["type"] == "final")


async def test_a_stream_far_ahead_of_real_time_is_read_at_the_file_priority() -> None:
    """Audio sent as fast as it is spoken is read at the stream priority; a recording sent
    faster than real time, once more than a window ahead of the wall clock, at the file
    priority, behind the streams people are waiting on."""
    now = [100.0]
    session, model = scripted_session([(0.0, 7.0), (30.0, 37.0)])
    session.clock = lambda: now[0]
    session.append(np.concatenate([sound(7.0, True), sound(1.5, False)]))
    now[0] += 8.5
    await session.step()
    session.append(sound(21.5, False))
    assert session.priority == Priority.STREAM  # 30 s in 8.5 s: ahead by at most a window
    session.append(np.concatenate([sound(7.0, True), sound(2.5, False)]))
    await session.step()  # 39.5 s of audio in 8.5 s: 31 s ahead
    now[0] += 30.0
    assert session.priority == Priority.STREAM  # the wall clock caught up
    assert model.priorities == [Priority.STREAM, Priority.FILE]


async def test_words_before_a_pause_are_final_at_once() -> None:
    session, _ = scripted_session([(0.0, 7.0)])
    session.append(np.concatenate([sound(7.0, True), sound(1.5, False)]))
    assert finals(await session.step()) == "".join(w.word for w in SPEECH_WORDS[:11])


async def test_a_hypothesis_that_fails_the_checks_waits_for_a_second_one() -> None:
    """A step is decoded once (no temperature fallback): a pause does not make an unlikely
    hypothesis final; one that agrees with it on the next step does."""
    session, model = scripted_session([(0.0, 7.0)])
    model.avg_logprob = -1.2
    session.append(np.concatenate([sound(7.0, True), sound(1.5, False)]))
    messages = await session.step()
    assert finals(messages) == "" and messages[-1]["text"].startswith(" w0 w1")
    model.avg_logprob = -0.1
    session.append(sound(0.5, False, seed=1))
    assert finals(await session.step()) == "".join(w.word for w in SPEECH_WORDS[:11])


async def test_speech_to_the_end_of_the_buffer_waits_for_agreement() -> None:
    session, _ = scripted_session([(0.0, 12.0)])
    session.append(sound(9.0, True))
    messages = await session.step()
    assert finals(messages) == "" and messages[-1]["type"] == "partial"
    session.append(sound(3.0, True, seed=1))
    assert finals(await session.step()).startswith(" w0 w1")


async def test_audio_that_arrives_while_the_model_works_is_no_pause() -> None:
    """The pause is judged on the audio the model heard: frames that came in meanwhile have
    not been looked at (taken for silence, they made a cut-off sentence final)."""
    session, model = scripted_session([(0.0, 15.0)])
    session.append(sound(9.0, True))
    model.arriving = [sound(3.0, True, seed=1)]
    assert finals(await session.step()) == ""


async def test_a_decoding_loop_is_never_final() -> None:
    """A hypothesis that ends in a loop (as two in a row can, and then agree on it): its
    copies must not become final text, here made final at once by the pause after them."""
    session, model = scripted_session([(0.0, 7.0)])
    model.loops = True
    session.append(np.concatenate([sound(7.0, True), sound(1.5, False)]))
    assert finals(await session.step()) == "".join(w.word for w in SPEECH_WORDS[:11])


class FirstWordAtWindowStart:
    """Hears "w0 w1" with w0 stretched back to its window's first sample, as Whisper stretches
    a first word over the quiet before it."""

    async def transcribe(self, audio, options, *, priority):
        words = (Word(" w0", 0.0, 0.5, 0.9), Word(" w1", 0.5, 0.9, 0.9))
        segment = Segment(0.0, 0.9, " w0 w1", -0.1, 0.01, 1.0, 0.0, words=words)
        return WindowResult(text=" w0 w1", language="en", segments=(segment,))


async def test_a_first_word_at_the_buffers_start_is_kept() -> None:
    """The buffer's start is a sum of cuts (0.1 + 0.2 s is 0.30000000000000004 s) and word
    times are rounded to the millisecond: a word at the window's first sample must not be
    taken for one of audio dropped while the model worked ("The" of "The long journey" was
    lost on a 1 s beat)."""
    session = StreamSession(
        FirstWordAtWindowStart(),
        StreamConfig(),
        min_new_audio_s=0.5,
        vad=StreamingVad(scorer=LoudnessScorer()),
    )
    session.append(sound(4.0, True))
    session.audio.cut(0.1)
    session.audio.cut(0.3)
    assert session.audio.start > 0.3
    await session.step()
    assert [word.word for word in session.agreement.tail] == [" w0", " w1"]


async def test_a_short_utterance_waits_for_a_second_hypothesis() -> None:
    """On a few seconds of audio alone Whisper guesses; a pause does not make that final."""
    session, _ = scripted_session([(0.0, 5.0)])
    session.append(np.concatenate([sound(5.0, True), sound(1.5, False)]))
    assert finals(await session.step()) == ""
    session.append(sound(1.0, False, seed=1))
    assert finals(await session.step()) == " w0 w1 w2 w3 w4 w5 w6 w7"


async def test_the_buffer_is_cut_at_a_gap_after_committed_words_inside_a_segment() -> None:
    """Sentences said without a long pause come back as one segment, which is never wholly
    committed while the speech goes on: the buffer is cut after the last committed word that
    a gap follows (less the lead-in) once it holds more than 4 s, and no word is lost or
    written twice for it."""
    first = [Word(f" a{i}", 0.2 + i * 0.6, 0.6 + i * 0.6, 0.9) for i in range(6)]  # to 3.6 s
    second = [Word(f" b{i}", 4.1 + i * 0.6, 4.5 + i * 0.6, 0.9) for i in range(8)]  # from 4.1 s
    model = ScriptedModel(first + second, [9.0])
    session = StreamSession(
        model, StreamConfig(), min_new_audio_s=0.5, vad=StreamingVad(scorer=LoudnessScorer())
    )
    model.session = session
    session.append(sound(5.0, True))
    await session.step()
    assert session.audio.start == 0.0  # a gap after a0-a5, but nothing committed yet
    session.append(sound(1.0, True, seed=1))
    committed = finals(await session.step())
    assert committed == "".join(w.word for w in [*first, second[0]])
    assert all(len(reply) == 1 for reply in model.replies)  # one segment, still open
    # cut after a5 (3.6 s, 0.5 s before b0), not after b0 (0.2 s before b1)
    assert session.audio.start == pytest.approx(3.6 - 1.0, abs=0.01)
    for seed in range(2, 5):
        session.append(sound(1.0, True, seed=seed))
        committed += finals(await session.step())
    for seed in range(5, 8):
        session.append(sound(1.0, False, seed=seed))
        committed += finals(await session.step())
    assert committed == "".join(w.word for w in first + second)


async def test_silence_after_committed_words_is_not_sent_to_the_model() -> None:
    session, model = scripted_session([(0.0, 7.0)])
    session.append(np.concatenate([sound(7.0, True), sound(1.5, False)]))
    await session.step()
    calls = model.calls
    for seed in range(1, 12):  # 33 s of silence: more than a window
        session.append(sound(3.0, False, seed=seed))
        assert await session.step() == []
        assert session.audio.samples.size <= 1.0 * RATE  # only the lead-in is kept
    assert model.calls == calls


async def test_a_step_drafts_with_the_last_steps_segments_while_its_window_starts_there() -> None:
    """A step sends the segments of the step before it (window time, as the model gave them)
    as its draft while the buffer still starts where that step's did; once the buffer was
    cut, times and text no longer line up, and it sends none."""
    session, model = scripted_session([(0.0, 7.0)])
    session.append(sound(4.0, True))
    await session.step()
    session.append(sound(3.0, True))
    await session.step()
    session.append(sound(1.5, False))
    await session.step()  # the pause: its words final, the buffer cut before it
    session.append(sound(3.0, True, seed=1))
    await session.step()
    assert [start for start, _ in model.heard] == [0.0, 0.0, 0.0, 7.5]
    assert model.drafts == [(), model.replies[0], model.replies[1], ()]
    assert model.replies[0] and model.replies[1] != model.replies[0]


async def test_a_pause_the_model_hears_no_words_in_is_dropped() -> None:
    """A hum the detector takes for speech, but no words: the buffer does not grow."""
    session, model = scripted_session([(0.0, 7.0)])
    session.append(np.concatenate([sound(7.0, True), sound(1.5, False)]))
    await session.step()
    for seed in range(1, 4):
        session.append(sound(3.0, True, seed=seed))
        assert finals(await session.step()) == ""
        assert session.audio.samples.size <= 1.0 * RATE
    assert model.calls == 4


async def test_a_pause_is_dropped_only_as_far_as_the_model_heard() -> None:
    """Speech that arrives while the model listens to a wordless stretch is kept for the
    next step (cut with the stretch, it lost whole sentences under load)."""
    session, model = scripted_session([(0.0, 7.0), (11.5, 14.5)])
    session.append(np.concatenate([sound(7.0, True), sound(1.5, False)]))
    await session.step()
    session.append(sound(3.0, True, seed=1))  # a hum without words, 8.5-11.5 s
    model.arriving = [sound(3.0, True, seed=2)]  # speech, 11.5-14.5 s
    assert finals(await session.step()) == ""
    heard = ""
    for seed in (3, 4):
        session.append(sound(1.5, False, seed=seed))
        heard += finals(await session.step())
    assert heard == " w19 w20 w21 w22 w23"


async def test_speech_the_model_heard_only_the_start_of_is_kept() -> None:
    """Whisper leaves out words cut off at the end of its window: with no new words, the
    speech at the end of what it heard is not a pause (taken for one, it lost "And so" and
    "ask" of JFK)."""
    session, model = scripted_session([(0.0, 7.0), (8.0, 12.0)])
    model.leaves_out_cut_off = True
    session.append(np.concatenate([sound(7.0, True), sound(1.0, False), sound(1.0, True, seed=1)]))
    await session.step()
    session.append(sound(0.6, True, seed=2))  # 9.6 s: heard 1.6 s of the second sentence
    assert finals(await session.step()) == "".join(w.word for w in SPEECH_WORDS[:11])
    session.append(np.concatenate([sound(2.4, True, seed=3), sound(1.5, False, seed=4)]))
    text = finals(await session.step())
    session.append(sound(0.5, False, seed=5))
    text += finals(await session.step())
    assert text == "".join(w.word for w in SPEECH_WORDS if 8.0 <= w.start and w.end <= 12.0)


async def commit_then_keep_the_tail(model_speech: list[tuple[float, float]]):
    """A session whose words up to 6.6 s are final, with the end of their stretch of speech
    (6.6-7.3 s: the detector's padding) kept, as the model might have heard only the start of
    a word there; then a second of silence."""
    session, model = scripted_session(model_speech)
    session.append(sound(7.0, True))
    await session.step()
    session.append(sound(0.6, False))
    text = finals(await session.step())
    assert text == "".join(w.word for w in SPEECH_WORDS[:11])
    assert session.audio.start == pytest.approx(6.6)
    return session, model, text


@pytest.mark.parametrize(
    ("no_speech_prob", "kept"), [(0.83, False), (0.3, True)], ids=["made-up", "heard"]
)
async def test_words_written_over_the_end_of_committed_speech_need_the_model_to_hear_speech(
    no_speech_prob: float, kept: bool
) -> None:
    """Over only the end of an utterance already final and the pause after it, tiny.en wrote
    "Thank you." (no-speech probability 0.78-0.84): with nothing new for the detector, and
    the model taking it for silence, those words are dropped, and the pause with them."""
    session, model, text = await commit_then_keep_the_tail([(0.0, 7.0)])
    model.makes_up, model.no_speech_prob = " Thank you.", no_speech_prob
    for seed in (1, 2):
        session.append(sound(1.0, False, seed=seed))
        text += finals(await session.step())
    assert text.endswith(" w10 Thank you.") is kept
    assert model.calls == (4 if kept else 3)  # made up: heard once, then the pause is gone


async def test_a_new_short_utterance_is_kept_whatever_the_models_no_speech_guess() -> None:
    """Speech that starts after the committed words is new to the detector: a short word
    there (Whisper's no-speech probability is often high on one) is the model's to write."""
    session, model, text = await commit_then_keep_the_tail([(0.0, 7.0), (7.9, 8.5)])
    model.no_speech_prob = 0.83
    session.append(np.concatenate([sound(0.3, False, seed=1), sound(0.6, True, seed=2)]))
    for seed in (3, 4, 5):
        session.append(sound(1.0, False, seed=seed))
        text += finals(await session.step())
    assert text == "".join(w.word for w in SPEECH_WORDS[:11]) + " w13"


async def test_a_window_stops_in_a_long_pause() -> None:
    """A buffer holding speech, a long pause and speech again (what an outage or a backlog
    leaves) is heard one utterance at a time, and the pause is not sent to the model."""
    session, model = scripted_session([(0.0, 5.0), (20.0, 25.0)])
    session.append(
        np.concatenate(
            [
                sound(5.0, True),
                sound(15.0, False),
                sound(5.0, True, seed=1),
                sound(1.5, False, seed=2),
            ]
        )
    )
    text = ""
    for seed in range(3, 6):
        text += finals(await session.step())
        session.append(sound(0.5, False, seed=seed))
    assert text == "".join(w.word for w in SPEECH_WORDS if w.end <= 5.0 or w.start >= 20.0)
    # no window holds both sentences, and the pause is dropped up to the second's lead-in
    assert [start for start, end in model.heard if end > 20.0] == [pytest.approx(18.7, abs=0.1)]
    assert all(end < 8.0 for start, end in model.heard if start < 18.0), model.heard


# ---- the messages -------------------------------------------------------------------------


def test_finals_never_start_before_the_previous_end() -> None:
    messages = StreamMessages()
    assert messages.finals([]) == []
    assert messages.finals([Word(" one", 1.0, 1.5, 0.9)]) == [
        {"type": "final", "text": " one", "start": 1.0, "end": 1.5}
    ]
    # the next word's timestamp drifted back into the first: it starts where that ended
    assert messages.finals([Word(" two", 1.2, 1.4, 0.9)]) == [
        {"type": "final", "text": " two", "start": 1.5, "end": 1.5}
    ]


def test_a_partial_is_sent_only_when_its_text_changes() -> None:
    messages = StreamMessages()
    assert messages.partials([]) == []
    words = [Word(" so", 0.0, 0.3, 0.9)]
    assert messages.partials(words) == [{"type": "partial", "text": " so"}]
    assert messages.partials(words) == []
    assert messages.partials([]) == [{"type": "partial", "text": ""}]


def test_skipped_audio_moves_the_final_times_on() -> None:
    messages = StreamMessages()
    assert messages.skipped(2.0, 2.005, "overload") == []  # under 10 ms: nothing to report
    assert messages.skipped(2.0, 6.0, "overload") == [
        {"type": "skipped", "start": 2.0, "end": 6.0, "reason": "overload"}
    ]
    assert messages.finals([Word(" late", 5.0, 6.5, 0.9)])[0]["start"] == 6.0


# ---- the read at the end of a stream ------------------------------------------------------


class FailsAfterFirstCall(ScriptedBackend):
    """Answers the first window, then the model goes away."""

    async def transcribe(self, audio, options, *, priority):
        if self.calls:
            self.calls.append(Call(audio.size / RATE, options, priority))
            raise AsrUnavailable("speech model unavailable: replica down")
        return await super().transcribe(audio, options, priority=priority)


async def test_a_read_at_the_end_that_fails_midway_keeps_what_it_read() -> None:
    """44 s buffered at `stop` are read in two windows; the second fails: the first one's
    words are final and the rest of the stream is reported as skipped."""
    backend = FailsAfterFirstCall()
    session = StreamSession(backend, StreamConfig(), min_new_audio_s=0.5)
    session.append(np.concatenate([load_audio(DATA_DIR / "jfk.flac")] * 4))
    messages = await session.finish(np.zeros(0, np.float32))
    assert [m["type"] for m in messages] == ["final", "skipped"]
    final, skipped = messages
    assert final["text"].split() == backend.texts()[0].split() != []
    assert skipped["start"] == pytest.approx(final["end"], abs=3.0)
    assert (skipped["end"], skipped["reason"]) == (44.0, "model_unavailable")
    assert len(backend.calls) >= 2  # the windows after the failed one may have started
