"""Silero VAD on real speech, silence and noise; the frame scores turned into regions; the
live detector agreeing with the whole-file one."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from gateway.modes import vad as vad_module
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_buffer import StreamBuffer
from gateway.modes.vad import (
    FRAME_SAMPLES,
    SpeechMap,
    StreamingVad,
    StreamScorer,
    VadConfig,
    detect_speech,
    score_speech,
    speech_probabilities,
    speech_regions,
)
from testsupport.clips import DATA_DIR, load_audio

SR = SAMPLE_RATE


def in_seconds(regions: list[tuple[int, int]]) -> list[tuple[float, float]]:
    return [(a / SR, b / SR) for a, b in regions]


@pytest.fixture(scope="module")
def jfk_between_silences() -> np.ndarray:
    jfk = load_audio(DATA_DIR / "jfk.flac")
    gap = np.zeros(10 * SR, np.float32)
    audio = np.concatenate([gap, jfk, gap, jfk, gap])
    return audio + np.random.default_rng(2).standard_normal(audio.size).astype(np.float32) * 3e-4


def test_silence_and_steady_noise_have_no_speech() -> None:
    assert detect_speech(np.zeros(5 * SR, np.float32)) == []
    noise = np.random.default_rng(1).standard_normal(5 * SR).astype(np.float32) * 0.05
    assert detect_speech(noise) == []
    assert detect_speech(np.zeros(0, np.float32)) == []


def test_speech_between_silences_is_found_where_it_is(jfk_between_silences) -> None:
    clip = load_audio(DATA_DIR / "jfk.flac").size / SR
    regions = in_seconds(detect_speech(jfk_between_silences))
    assert regions[0][0] >= 10.0 - 0.35 and regions[-1][1] <= 2 * (10 + clip) + 0.35

    def covered(t: float) -> bool:
        return any(a <= t <= b for a, b in regions)

    assert not covered(5.0) and not covered(10 + clip + 5) and not covered(2 * (10 + clip) + 5)
    assert covered(12.0) and covered(10 + clip + 10 + 2.0)
    assert all(b - a >= 0.1 for a, b in regions)


def test_speech_is_found_in_loud_noise() -> None:
    """JFK under white noise as loud as the speech (0 dB): the energy detector found nothing."""
    jfk = load_audio(DATA_DIR / "jfk.flac")
    noise = np.random.default_rng(3).standard_normal(jfk.size).astype(np.float32)
    noise *= np.sqrt(np.mean(jfk**2) / np.mean(noise**2))
    speech = sum(b - a for a, b in detect_speech(jfk)) / SR
    in_noise = sum(b - a for a, b in detect_speech((jfk + noise) / 2)) / SR
    assert in_noise >= 0.7 * speech


def test_pauses_between_sentences_split_regions() -> None:
    harvard = load_audio(DATA_DIR / "OSR_us_000_0034_8k.wav")
    assert 8 <= len(detect_speech(harvard)) <= 12  # ten sentences


def test_regions_open_at_the_threshold_and_close_after_a_long_enough_pause() -> None:
    frames = np.array([0.0, 0.9, 0.9, 0.2, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9])
    config = VadConfig(
        threshold=0.5, release=0.3, min_silence_seconds=0.2, pad_seconds=0.0, min_speech_seconds=0.0
    )
    regions = speech_regions(frames, frames.size * FRAME_SAMPLES, config)
    # the 0.2 dip is one frame: not a pause; the run of zeros is; the last frame is speech
    assert [(a // FRAME_SAMPLES, b // FRAME_SAMPLES) for a, b in regions] == [(1, 5), (13, 14)]


def test_padding_merges_close_regions_and_stays_inside_the_audio() -> None:
    frames = np.array([0.9] * 5 + [0.0] * 20 + [0.9] * 5)
    total = frames.size * FRAME_SAMPLES - 100
    close = speech_regions(frames, total, VadConfig(min_silence_seconds=0.1, pad_seconds=0.4))
    apart = speech_regions(frames, total, VadConfig(min_silence_seconds=0.1, pad_seconds=0.1))
    assert close == [(0, total)]
    assert len(apart) == 2 and apart[0][0] == 0 and apart[1][1] == total


def test_the_live_detector_scores_as_the_whole_file_detector(jfk_between_silences) -> None:
    audio = jfk_between_silences
    live = StreamingVad()
    for start in range(0, audio.size, 1_000):  # frames of any size
        live.accept(audio[start : start + 1_000])
    whole = speech_probabilities(audio)
    stream_regions = in_seconds(live.regions(0, audio.size))
    file_regions = in_seconds(speech_regions(whole, audio.size))
    assert len(stream_regions) == len(file_regions)
    for (a, b), (c, d) in zip(stream_regions, file_regions, strict=True):
        assert a == pytest.approx(c, abs=0.1) and b == pytest.approx(d, abs=0.1)


def test_the_live_detector_answers_for_any_stretch_after_forgetting(jfk_between_silences) -> None:
    audio = jfk_between_silences
    live = StreamingVad()
    live.accept(audio)
    everything = in_seconds(live.regions(0, audio.size))
    live.forget_before(15 * SR)
    later = in_seconds(live.regions(15 * SR, audio.size))  # relative to 15 s
    expected = [(max(a, 15.0) - 15, b - 15) for a, b in everything if b > 15.0]
    assert later == [pytest.approx(r, abs=FRAME_SAMPLES / SR) for r in expected]


async def test_a_streams_buffer_is_mapped_as_file_mode_maps_it(jfk_between_silences) -> None:
    """The live detector's map of a buffer that starts off the frame grid (what a stream's
    read at its end uses instead of scoring its buffer again) against file mode's scoring of
    the same samples: the same stretches of speech, their edges within the regions' padding
    (0.3 s; the two detectors differ by up to 0.2 s: file mode scores 10 s pieces side by
    side, a stream's frames carry the state of all before them), a score per frame."""
    audio = jfk_between_silences
    live = StreamingVad()
    for start in range(0, audio.size, 1_600):
        live.accept(audio[start : start + 1_600])
    start = 7 * SR + 123  # a stream trims its buffer anywhere
    live.forget_before(start)
    found = live.speech_map(start, audio.size, VadConfig())
    scored = await SpeechMap.of(audio[start:], VadConfig())
    assert abs(found.scores.size - scored.scores.size) <= 1
    for mine, theirs in ((found.regions, scored.regions), (found.speech, scored.speech)):
        assert len(mine) == len(theirs) >= 2
        for (a, b), (c, d) in zip(in_seconds(mine), in_seconds(theirs), strict=True):
            assert a == pytest.approx(c, abs=0.25) and b == pytest.approx(d, abs=0.25)
    assert found.regions == live.regions(start, audio.size, VadConfig())


class CountingScorer(StreamScorer):
    def __init__(self, rows_per_group: int = vad_module.STREAM_ROWS_PER_GROUP, cores: int = 1):
        super().__init__(rows_per_group, lambda: cores)
        self.batches: list[int] = []

    def score(self, inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.batches.append(len(inputs))
        return super().score(inputs, state)


def test_streams_sharing_a_scorer_score_as_each_alone_in_one_call_per_frame(
    jfk_between_silences,
) -> None:
    """Three streams of different audio, lengths and frame sizes, scored together: the
    same scores as each stream scored by itself, one batched call per frame position."""
    audio = jfk_between_silences
    streams = [audio[: 6 * SR], audio[3 * SR : 12 * SR], audio[8 * SR : 10 * SR][::-1].copy()]
    shared = CountingScorer()
    together = [StreamingVad(scorer=shared) for _ in streams]
    alone = [StreamingVad() for _ in streams]
    for vad, stream, frame in zip(together, streams, (1_000, 1_600, 333), strict=True):
        for start in range(0, stream.size, frame):
            vad.accept(stream[start : start + frame])
    for vad, stream in zip(alone, streams, strict=True):
        vad.accept(stream)
    for shared_vad, own_vad, stream in zip(together, alone, streams, strict=True):
        assert shared_vad.regions(0, stream.size) == own_vad.regions(0, stream.size)
        np.testing.assert_allclose(shared_vad._scores, own_vad._scores, atol=1e-5)
    longest = max(stream.size for stream in streams) // FRAME_SAMPLES
    assert len(shared.batches) == longest and shared.batches[0] == 3
    # frames that come later are scored at the next question, the shared state carried on
    together[0].accept(audio[6 * SR : 7 * SR])
    alone[0].accept(audio[6 * SR : 7 * SR])
    assert together[0].regions(0, 7 * SR) == alone[0].regions(0, 7 * SR)
    np.testing.assert_allclose(together[0]._scores, alone[0]._scores, atol=1e-5)


def test_many_streams_are_scored_in_groups_side_by_side_as_each_alone(
    jfk_between_silences,
) -> None:
    """With enough streams per core, the streams are dealt into groups scored in threads side
    by side (one per core at most): every stream's scores are still its own, each group
    makes its own call per frame position, and a group's streams run longest first."""
    audio = jfk_between_silences
    lengths = [11, 4, 9, 6, 2, 7, 5]  # seconds: 7 streams, 3 groups (3 cores, 2 rows each)
    streams = [audio[second * SR : (second + length) * SR] for second, length in enumerate(lengths)]
    shared = CountingScorer(rows_per_group=2, cores=3)
    together = [StreamingVad(scorer=shared) for _ in streams]
    for vad, stream in zip(together, streams, strict=True):
        vad.accept(stream)
    together[0].regions(0, 1)  # the first question scores every stream
    for vad, stream in zip(together, streams, strict=True):
        alone = StreamingVad()
        alone.accept(stream)
        assert vad.regions(0, stream.size) == alone.regions(0, stream.size)
        np.testing.assert_allclose(vad._scores, alone._scores, atol=1e-5)
    frames = sorted((length * SR // FRAME_SAMPLES for length in lengths), reverse=True)
    groups = [frames[0::3], frames[1::3], frames[2::3]]  # dealt longest first
    assert sorted(shared.batches) == sorted(
        sum(length > position for length in group)
        for group in groups
        for position in range(group[0])
    )


def test_forgetting_drops_frames_not_yet_scored_and_scores_what_follows(
    jfk_between_silences,
) -> None:
    """A stream that sent far more than the session keeps (a client flooding faster than
    real time): the frames cut away are never scored, and the detector answers for the rest
    as a stream that began there."""
    audio = jfk_between_silences
    scorer = CountingScorer()
    live = StreamingVad(scorer=scorer)
    live.accept(np.zeros(20 * SR, np.float32))  # a minute-long flood, in miniature
    live.accept(audio)
    start = 20 * SR
    live.forget_before(start)
    assert sum(scorer.batches) == 0  # nothing was scored to forget it
    regions = in_seconds(live.regions(start, start + audio.size))
    fresh = StreamingVad()
    fresh.accept(audio)
    assert sum(scorer.batches) == audio.size // FRAME_SAMPLES  # only the kept frames
    assert regions == in_seconds(fresh.regions(0, audio.size))


class GatedScorer(CountingScorer):
    """Scores only while `gate` is open: a round stays in its threads until the test opens
    it, and the test sees what the event loop can do meanwhile."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()

    def score(self, inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.gate.wait(10)
        return super().score(inputs, state)


def alone(*pieces: np.ndarray) -> StreamingVad:
    """A stream with its own scorer, sent `pieces` one after another, scored."""
    vad = StreamingVad()
    for piece in pieces:
        vad.accept(piece)
    vad.regions(0, 1)
    return vad


async def test_streams_catch_up_in_one_round_while_the_loop_serves(jfk_between_silences) -> None:
    """Many streams step on one beat and wait for their frames together: one round scores
    them all in threads, the event loop runs other work until it is done, and every stream
    ends with the scores it would have alone."""
    audio = jfk_between_silences
    streams = [audio[second * SR : (second + 3) * SR] for second in range(0, 24, 3)]
    scorer = GatedScorer(rows_per_group=2, cores=2)
    vads = [StreamingVad(scorer=scorer) for _ in streams]
    for vad, stream in zip(vads, streams, strict=True):
        vad.accept(stream)
    steps = [asyncio.create_task(vad.catch_up()) for vad in vads]
    ticks = 0
    while ticks < 5:  # the loop turns while the round waits at its gate
        await asyncio.sleep(0.01)
        ticks += 1
    assert not any(step.done() for step in steps) and scorer.batches == []
    scorer.gate.set()
    await asyncio.gather(*steps)
    frames = 3 * SR // FRAME_SAMPLES
    assert len(scorer.batches) == 2 * frames  # one round: two groups, a call per frame each
    for vad, stream in zip(vads, streams, strict=True):
        assert vad.unscored_from is None
        np.testing.assert_allclose(vad._scores, alone(stream)._scores, atol=1e-5)


async def test_frames_that_come_during_a_round_are_scored_before_the_step_reads(
    jfk_between_silences,
) -> None:
    """A stream's frames that arrive while its round runs are scored in the next round
    (every stream's that came meanwhile, together) before its step reads the buffer, with
    the state the first round left."""
    audio = jfk_between_silences
    scorer = GatedScorer()
    buffer = StreamBuffer(StreamingVad(scorer=scorer))
    buffer.append(audio[: 4 * SR])
    step = asyncio.create_task(buffer.catch_up())
    await asyncio.sleep(0.01)
    buffer.append(audio[4 * SR : 5 * SR])  # came while the round ran
    scorer.gate.set()
    await step
    assert buffer.scored_samples.size == 5 * SR
    # two rounds of one stream: a call per frame, the first round's and then the rest
    assert len(scorer.batches) == 5 * SR // FRAME_SAMPLES
    np.testing.assert_allclose(
        buffer.vad._scores, alone(audio[: 4 * SR], audio[4 * SR : 5 * SR])._scores, atol=1e-5
    )


async def test_a_step_reads_only_what_the_detector_has_scored(jfk_between_silences) -> None:
    """Frames keep coming faster than rounds score them (a client flooding): the step stops
    waiting after `catch_up_rounds` rounds and reads the buffer up to its first frame not
    scored, answered from the scores the stream has, without scoring on the event loop."""
    audio = jfk_between_silences

    class Slow(CountingScorer):
        def score(self, inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            time.sleep(0.002)
            return super().score(inputs, state)

    scorer = Slow()
    buffer = StreamBuffer(StreamingVad(scorer=scorer))
    buffer.append(audio[: 2 * SR])
    step = asyncio.create_task(buffer.catch_up())
    sent = 2 * SR
    while not step.done():  # a frame every millisecond: 32 times real time
        buffer.append(audio[sent : sent + 512])
        sent += 512
        await asyncio.sleep(0.001)
    await step
    scored = buffer.scored_samples.size
    assert 2 * SR <= scored < sent == buffer.samples.size
    assert scored == buffer.vad.frames_done * FRAME_SAMPLES
    calls = len(scorer.batches)
    regions = buffer.speech_regions(scored)
    assert len(scorer.batches) == calls
    assert regions == in_seconds(alone(audio[:scored]).regions(0, scored))


async def test_a_cancelled_wait_leaves_the_round_to_finish(jfk_between_silences) -> None:
    """The step waiting for a round is cancelled (its client hung up): the round still gives
    every stream in it its scores, and the next question scores nothing again."""
    audio = jfk_between_silences
    scorer = GatedScorer()
    vads = [StreamingVad(scorer=scorer) for _ in range(2)]
    for vad in vads:
        vad.accept(audio[: 2 * SR])
    step = asyncio.create_task(vads[0].catch_up())
    await asyncio.sleep(0.01)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    scorer.gate.set()
    for _ in range(100):
        if vads[1].unscored_from is None:
            break
        await asyncio.sleep(0.01)
    calls = len(scorer.batches)
    assert [vad.unscored_from for vad in vads] == [None, None]
    assert vads[1].regions(0, 2 * SR) == alone(audio[: 2 * SR]).regions(0, 2 * SR)
    assert len(scorer.batches) == calls == 2 * SR // FRAME_SAMPLES


async def test_forgetting_during_a_round_happens_when_it_ends(jfk_between_silences) -> None:
    """The session trims its buffer while the stream's frames are being scored: the frames
    are forgotten once their scores are in, and the stream answers as if trimmed after."""
    audio = jfk_between_silences
    scorer = GatedScorer()
    live = StreamingVad(scorer=scorer)
    live.accept(audio)
    step = asyncio.create_task(live.catch_up())
    await asyncio.sleep(0.01)
    start = 15 * SR
    live.forget_before(start)
    scorer.gate.set()
    await step
    trimmed_after = alone(audio)
    trimmed_after.forget_before(start)
    assert live._first_frame == trimmed_after._first_frame
    assert live.regions(start, audio.size) == trimmed_after.regions(start, audio.size)


async def test_a_failed_round_is_reported_and_the_streams_stay_on_their_grid(
    jfk_between_silences,
) -> None:
    """The detector raises in a round: the steps whose frames were in it get the error, the
    frames count as not speech and later frames are scored in their places; a step that
    only waited for that round to end scores its own frames in the next."""
    audio = jfk_between_silences

    class FailingOnce(GatedScorer):
        failed = False

        def score(self, inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            assert self.gate.wait(10)
            if not self.failed:
                self.failed = True
                raise RuntimeError("onnxruntime failed")
            return super().score(inputs, state)

    scorer = FailingOnce()
    live, later = StreamingVad(scorer=scorer), StreamingVad(scorer=scorer)
    live.accept(audio[: 10 * SR])
    failing = asyncio.create_task(live.catch_up())
    await asyncio.sleep(0.01)
    later.accept(audio[: 2 * SR])  # not in the round that fails
    waiting = asyncio.create_task(later.catch_up())
    await asyncio.sleep(0.01)
    scorer.gate.set()
    with pytest.raises(RuntimeError, match="onnxruntime failed"):
        await failing
    await waiting
    np.testing.assert_allclose(later._scores, alone(audio[: 2 * SR])._scores, atol=1e-5)
    assert live.unscored_from is None and not live._scores.any()
    live.accept(audio[10 * SR : 22 * SR])  # JFK starts at 10 s
    await live.catch_up()
    found = in_seconds(live.regions(0, 22 * SR))
    expected = in_seconds(alone(audio[: 22 * SR]).regions(0, 22 * SR))
    assert found == [pytest.approx(region, abs=0.1) for region in expected]


async def test_scoring_off_the_loop_gives_the_same_scores(jfk_between_silences) -> None:
    audio = np.tile(jfk_between_silences, 8)  # a few blocks
    scores = await score_speech(audio)
    assert np.array_equal(scores, speech_probabilities(audio))


def test_blocks_are_even_and_cover_every_piece() -> None:
    piece = vad_module.PIECE_FRAMES * FRAME_SAMPLES
    assert vad_module._blocks(np.zeros(0, np.float32)) == []
    assert vad_module._blocks(np.zeros(1, np.float32)) == [(0, 1)]
    assert vad_module._blocks(np.zeros(16 * piece, np.float32)) == [(0, 16)]
    # 29 pieces: two blocks of 15 and 14, not 16 and 13
    assert vad_module._blocks(np.zeros(28 * piece + 1, np.float32)) == [(0, 15), (15, 14)]


async def test_blocks_are_scored_side_by_side(monkeypatch) -> None:
    """A long file's blocks run in `SCORING_THREADS` threads at once, never more, and the
    scores come back in file order whatever order the blocks finish in."""
    running, most = 0, 0
    lock = threading.Lock()

    def block(audio: np.ndarray, first: int, pieces: int) -> np.ndarray:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05 if first == 0 else 0.01)  # the first block finishes last
        with lock:
            running -= 1
        return np.full(pieces * vad_module.PIECE_FRAMES, first, np.float32)

    monkeypatch.setattr(vad_module, "_scored_block", block)
    audio = np.zeros(4 * 16 * vad_module.PIECE_FRAMES * FRAME_SAMPLES, np.float32)  # 4 blocks
    scores = await score_speech(audio)
    assert most == vad_module.SCORING_THREADS == 2
    assert np.array_equal(np.unique(scores), [0, 16, 32, 48])
    assert np.all(np.diff(scores) >= 0)


async def test_scoring_leaves_the_default_executor_free(monkeypatch) -> None:
    """Many uploads detected at once do not hold asyncio's worker threads: what an upload does
    next (its regions, writing the next upload to disk) runs at once instead of queueing
    behind every other file's blocks, which kept 64 uploads' windows back until all 64 had
    been scored."""
    release = threading.Event()

    def block(audio: np.ndarray, first: int, pieces: int) -> np.ndarray:
        release.wait(10)
        return np.zeros(pieces * vad_module.PIECE_FRAMES, np.float32)

    monkeypatch.setattr(vad_module, "_scored_block", block)
    audio = np.zeros(SR, np.float32)
    files = [asyncio.create_task(score_speech(audio)) for _ in range(40)]  # > 32 workers
    await asyncio.sleep(0.1)
    try:
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "ran"), 2.0) == "ran"
    finally:
        release.set()
        await asyncio.gather(*files)


async def test_cancelled_scoring_stops_within_a_block(monkeypatch) -> None:
    """The client of a long upload hangs up while the detector runs: the blocks after the
    ones in progress are never scored."""
    calls = []
    score = vad_module._score

    def counting(inputs, state):
        calls.append(len(inputs))
        return score(inputs, state)

    monkeypatch.setattr(vad_module, "_score", counting)
    hour = np.zeros(3600 * SR, np.float32)  # 23 blocks
    task = asyncio.create_task(score_speech(hour))
    while not calls:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.5)  # the block in progress finishes in its thread
    steps_per_block = vad_module.WARM_UP_FRAMES + vad_module.PIECE_FRAMES
    assert len(calls) <= vad_module.SCORING_THREADS * steps_per_block
