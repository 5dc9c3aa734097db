"""Accuracy audio: synthesized and real sentences with known pauses, clean or under noise.

The shared clips (JFK, Harvard list 72) are 46 s of two recordings. How the service cuts audio
at pauses and how it copes with noise needs longer and more varied speech whose reference text
and speech positions are known exactly. espeak-ng reads Harvard sentences (lists 1-8) in several
voices: no download, and the same bytes on every run with the same espeak-ng version. Every clip
is 16 kHz mono float32 with a boolean mask of where the clean speech lies, so noise can be mixed
at an SNR measured over the speech alone.

`python -m benchmarks.speech OUT_DIR [--plan NAME ...] [--noise KIND --snr DB]` writes plans as
WAV with a .txt reference and a .json of speech ranges; `python -m benchmarks.speech
--test-fixtures` writes the small FLAC clips the tests commit to tests/data/accuracy/.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile
import soxr

from benchmarks.audio import DATA_DIR, HARVARD, JFK, clip, load_audio
from benchmarks.composite import NOISE_RMS, SEED
from gateway.modes.audio import SAMPLE_RATE

# Harvard sentences, lists 1-8 (IEEE 1969, public domain); list 72 is in tests/data already.
# A few compounds are written as one word ("halfway", "drugstore") as Whisper spells them, so a
# right transcript scores as right.
SENTENCES = (
    # list 1
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    # list 2
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    # list 3
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    # list 4
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
    # list 5
    "A king ruled the state in the early days.",
    "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.",
    "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.",
    "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.",
    "Hop over the fence and plunge in.",
    "The friendly gang left the drugstore.",
    "Mesh wire keeps chicks inside.",
    # list 6
    "The frosty air passed through the coat.",
    "The crooked maze failed to fool the mouse.",
    "Adding fast leads to wrong sums.",
    "The show was a flop from the very start.",
    "A saw is a tool used for making boards.",
    "The wagon moved on well-oiled wheels.",
    "March the soldiers past the next hill.",
    "A cup of sugar makes sweet fudge.",
    "Place a rosebush near the porch steps.",
    "Both lost their lives in the raging storm.",
    # list 7
    "We talked of the sideshow in the circus.",
    "Use a pencil to write the first draft.",
    "He ran halfway to the hardware store.",
    "The clock struck to mark the third period.",
    "A small creek cut across the field.",
    "Cars and buses stalled in snowdrifts.",
    "The set of china hit the floor with a crash.",
    "This is a grand season for hikes on the road.",
    "The dune rose from the edge of the water.",
    "Those words were the cue for the actor to leave.",
    # list 8
    "A yacht slid around the point into the bay.",
    "The two met while playing on the sand.",
    "The ink stain dried on the finished page.",
    "The walled town was seized without a fight.",
    "The lease ran out in sixteen weeks.",
    "A tame squirrel makes a nice pet.",
    "The horn of the car woke the sleeping cop.",
    "The heart beat strongly and with firm strokes.",
    "The pearl was worn in a thin silver ring.",
    "The fruit peel was cut in thick slices.",
)

Speaker = tuple[str, int]  # espeak-ng voice, words per minute
SPEAKERS: tuple[Speaker, ...] = (
    ("en-us", 160),
    ("en-gb", 150),
    ("en-us+f3", 170),
    ("en-gb-x-rp", 155),
    ("en-us+m3", 175),
    ("en-029", 165),
)
# Babble needs more talkers than the plans' speakers; each reads lists of its own.
BABBLE_SPEAKERS: tuple[Speaker, ...] = (*SPEAKERS, ("en-gb+f4", 160), ("en-us-nyc", 170))

SPEECH_RMS = 0.05  # about -26 dBFS: every sentence as loud, with headroom for noise at 0 dB
TRIM_LEVEL = 0.01  # of a sentence's peak: espeak-ng's own leading and trailing silence is below
TURN_GAP = 0.3  # seconds between the sentences of one conversational turn
PEAK = 0.99  # a mixture louder than this is scaled down (speech and noise alike)
NOISE_SEED = 11
FRAME = 320  # 20 ms frames for the real clips' energy
VOICED_DB = 15.0  # a real clip's frame is speech this far above its quietest tenth
# kept around a real sentence's voiced frames: their threshold misses weak fricative tails
# ("coins" loses its s)
REAL_MARGIN = 0.1
HARVARD_SENTENCES = 10
FIXTURE_DIR = DATA_DIR / "accuracy"


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng")
    return path


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """'1.51': the synthesized audio is byte-identical only for the same version."""
    output = subprocess.run([_espeak(), "--version"], capture_output=True, text=True, check=True)
    return output.stdout.split("text-to-speech:")[1].split()[0]


@lru_cache(maxsize=512)
def synthesize(text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng's reading of `text` at 16 kHz (soxr from its 22.05 kHz), read-only."""
    result = subprocess.run(
        [_espeak(), "-v", voice, "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
    )
    # espeak-ng streams its WAV with a placeholder length: `wave` reads to the end regardless.
    with wave.open(io.BytesIO(result.stdout)) as reader:
        assert reader.getnchannels() == 1 and reader.getsampwidth() == 2
        rate = reader.getframerate()
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    audio = soxr.resample(pcm.astype(np.float32) / 32768, rate, SAMPLE_RATE)
    audio.flags.writeable = False
    return audio


def trim(audio: np.ndarray, level: float = TRIM_LEVEL) -> np.ndarray:
    """The part between the first and last sample above `level` of the peak."""
    loud = np.flatnonzero(np.abs(audio) > level * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1]


def leveled(audio: np.ndarray) -> np.ndarray:
    """Scaled to SPEECH_RMS, so voices and recordings are equally loud."""
    return (audio * (SPEECH_RMS / np.sqrt(np.mean(np.square(audio, dtype=np.float64))))).astype(
        np.float32
    )


def spoken(text: str, speaker: Speaker) -> np.ndarray:
    """One synthesized sentence as the plans use it: trimmed tight and leveled."""
    return leveled(trim(synthesize(text, *speaker)))


# --- real speech ------------------------------------------------------------------------


def _voiced(audio: np.ndarray) -> np.ndarray:
    """Indices of the 20 ms frames well above the clip's own noise floor."""
    frames = audio[: audio.size // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return np.flatnonzero(energy > np.percentile(energy, 10) + VOICED_DB)


def _span(audio: np.ndarray, first: int, last: int) -> np.ndarray:
    """Frames `first` to `last` (inclusive) and REAL_MARGIN either side."""
    margin = round(REAL_MARGIN * SAMPLE_RATE)
    return audio[max(first * FRAME - margin, 0) : (last + 1) * FRAME + margin]


def harvard_sentences() -> list[tuple[np.ndarray, str]]:
    """The Harvard clip cut at its 9 longest pauses into its 10 sentences, with their texts.

    Within a sentence no pause lasts more than 0.62 s; between them none less than 0.86 s.
    """
    audio = load_audio(DATA_DIR / HARVARD)
    texts = [text if text.endswith(".") else text + "." for text in clip(HARVARD).text.split(". ")]
    voiced = _voiced(audio)
    gaps = np.diff(voiced)
    cuts = np.sort(np.argsort(gaps)[::-1][: HARVARD_SENTENCES - 1])
    firsts = np.concatenate([[voiced[0]], voiced[cuts + 1]])
    lasts = np.concatenate([voiced[cuts], [voiced[-1]]])
    assert len(texts) == HARVARD_SENTENCES
    return [
        (_span(audio, first, last), text)
        for first, last, text in zip(firsts, lasts, texts, strict=True)
    ]


@lru_cache(maxsize=1)
def real_sentences() -> tuple[tuple[np.ndarray, str], ...]:
    """The Harvard list's 10 sentences and JFK, each cut to its voiced span and leveled."""
    jfk_audio = load_audio(DATA_DIR / JFK)
    voiced = _voiced(jfk_audio)
    jfk = (_span(jfk_audio, voiced[0], voiced[-1]), clip(JFK).text)
    return tuple((leveled(audio), text) for audio, text in [*harvard_sentences(), jfk])


# --- plans ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How one clip is laid out: which sentences, who reads them, the pauses around them."""

    name: str
    pause: tuple[float, float]  # before each turn and after the last: uniform, seeded, seconds
    sentences: tuple[int, ...] = ()  # indices into SENTENCES, in order
    speakers: tuple[Speaker, ...] = ()  # one per turn, in rotation
    min_turn: float = 0.0  # a turn takes sentences until it lasts this long (a conversation)
    real_seconds: float = 0.0  # no sentences: the real clips' sentences, shuffled, this long
    seed: int = SEED


class Speech(NamedTuple):
    audio: np.ndarray  # 16 kHz mono float32
    text: str  # the reference
    mask: np.ndarray  # bool per sample: inside a sentence's trimmed speech


CONTINUOUS_03 = Plan("continuous-0.3", (0.3, 0.3), tuple(range(46)), SPEAKERS)
CONTINUOUS_05 = Plan("continuous-0.5", (0.5, 0.5), tuple(range(6, 80)), SPEAKERS[3:] + SPEAKERS[:3])
CONVERSATION = Plan(
    "conversation", (2.0, 4.0), tuple(range(74)), (("en-us+f3", 160), ("en-gb", 145)), min_turn=3.0
)
REAL_CONTINUOUS = Plan("real-continuous", (0.3, 0.3), real_seconds=100.0)
SPARSE = Plan("sparse-4s", (4.0, 4.0), (7, 9, 21, 22, 28, 35, 46, 77), SPEAKERS[:4])
PLANS = {
    plan.name: plan
    for plan in (CONTINUOUS_03, CONTINUOUS_05, CONVERSATION, REAL_CONTINUOUS, SPARSE)
}
FIXTURE_SPEAKERS = (SPEAKERS[0], SPEAKERS[2], SPEAKERS[3], SPEAKERS[4])
FIXTURE_CONTINUOUS = Plan("continuous", (0.3, 0.3), tuple(range(40, 70)), FIXTURE_SPEAKERS)
FIXTURE_SPARSE = Plan("sparse", (4.0, 4.0), (3, 17, 31, 44, 58, 69), FIXTURE_SPEAKERS)

Turn = list[tuple[np.ndarray, str]]


def _synthesized_turns(plan: Plan) -> list[Turn]:
    turns: list[Turn] = []
    seconds = plan.min_turn  # so that the first sentence opens a turn
    for index in plan.sentences:
        if seconds >= plan.min_turn:
            turns.append([])
            seconds = -TURN_GAP
        text = SENTENCES[index]
        audio = spoken(text, plan.speakers[(len(turns) - 1) % len(plan.speakers)])
        turns[-1].append((audio, text))
        seconds += TURN_GAP + audio.size / SAMPLE_RATE
    return turns


def _real_turns(plan: Plan, rng: np.random.Generator) -> list[Turn]:
    """Shuffled passes over the real sentences until the clip lasts `plan.real_seconds`."""
    sentences, turns, seconds = real_sentences(), [], 0.0
    while seconds < plan.real_seconds:
        for index in rng.permutation(len(sentences)):
            if seconds >= plan.real_seconds:
                break
            turns.append([sentences[index]])
            seconds += sentences[index][0].size / SAMPLE_RATE + np.mean(plan.pause)
    return turns


@lru_cache(maxsize=8)
def build(plan: Plan) -> Speech:
    """The plan's audio (same samples on every run), reference text and speech mask, read-only.

    Each turn follows a pause; sentences within a turn are TURN_GAP apart. Faint seeded noise
    (NOISE_RMS) lies under everything: no digital zero, as from a real microphone.
    """
    rng = np.random.default_rng(plan.seed)
    turns = _real_turns(plan, rng) if plan.real_seconds else _synthesized_turns(plan)
    pieces, flags, texts = [], [], []

    def pause(seconds: float) -> None:
        pieces.append(np.zeros(round(seconds * SAMPLE_RATE), np.float32))
        flags.append(np.zeros(pieces[-1].size, bool))

    for turn in turns:
        pause(rng.uniform(*plan.pause))
        for position, (audio, text) in enumerate(turn):
            if position:
                pause(TURN_GAP)
            pieces.append(audio)
            flags.append(np.ones(audio.size, bool))
            texts.append(text)
    pause(rng.uniform(*plan.pause))
    audio = np.concatenate(pieces)
    audio += (rng.standard_normal(audio.size) * NOISE_RMS).astype(np.float32)
    return _frozen(Speech(audio, " ".join(texts), np.concatenate(flags)))


def _frozen(speech: Speech) -> Speech:
    speech.audio.flags.writeable = speech.mask.flags.writeable = False
    return speech


def speech_ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """The mask as (start, end) sample ranges, end exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2], strict=True)]


# --- noise ------------------------------------------------------------------------------


def _unit(audio: np.ndarray) -> np.ndarray:
    return (audio / np.sqrt(np.mean(np.square(audio, dtype=np.float64)))).astype(np.float32)


def steady(samples: int, seed: int = NOISE_SEED) -> np.ndarray:
    """Pink noise (power falling 3 dB an octave, like fans and traffic), unit RMS.

    White noise shaped by 1/sqrt(f) in the frequency domain, flat below 20 Hz so rumble does not
    take the power.
    """
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(samples))
    frequencies = np.fft.rfftfreq(samples, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(frequencies, 20.0))
    spectrum[0] = 0
    return _unit(np.fft.irfft(spectrum, samples))


def babble(samples: int, seed: int = NOISE_SEED) -> np.ndarray:
    """Eight espeak-ng talkers at once, each time-reversed: speech-like, no words, unit RMS.

    Each reads every eighth sentence, is looped from a seeded offset, and is as loud as the rest.
    """
    rng = np.random.default_rng(seed)
    total = np.zeros(samples, np.float64)
    talkers = len(BABBLE_SPEAKERS)
    for index, speaker in enumerate(BABBLE_SPEAKERS):
        talk = _unit(synthesize(" ".join(SENTENCES[index::talkers]), *speaker)[::-1])
        total += np.resize(np.roll(talk, rng.integers(talk.size)), samples)
    return _unit(total)


BEAT = 0.5  # seconds: a new chord and a tick on every beat
TRIADS = ((0, 4, 7), (2, 5, 9), (4, 7, 11), (5, 9, 12), (7, 11, 14), (9, 12, 16))  # I..vi
HARMONICS = 6  # 1/k amplitudes: a band-limited sawtooth, like an organ or synth


def _chord(tonic: float, triad: tuple[int, ...], t: np.ndarray) -> np.ndarray:
    """A triad over its root an octave down, each note a sawtooth of HARMONICS partials."""
    notes = tonic * 2.0 ** (np.array([triad[0] - 12, *triad]) / 12)
    partials = np.outer(notes, np.arange(1, HARMONICS + 1)).ravel()
    weights = np.tile(1 / np.arange(1, HARMONICS + 1), notes.size)
    return weights @ np.sin(2 * np.pi * np.outer(partials, t))


def music(samples: int, seed: int = NOISE_SEED) -> np.ndarray:
    """A synthetic piece, unit RMS: a seeded 8-chord progression in a seeded key, one chord per
    beat with a plucked envelope, and a soft noise tick on every beat (louder each fourth).
    """
    rng = np.random.default_rng(seed)
    beat = round(BEAT * SAMPLE_RATE)
    t = np.arange(beat) / SAMPLE_RATE
    # 10 ms attack, decay, 20 ms release: no click where one beat meets the next
    envelope = np.minimum(t / 0.01, 1) * np.exp(-3 * t) * np.minimum((BEAT - t) / 0.02, 1)
    tonic = 220 * 2 ** (rng.integers(12) / 12)
    chords = [_chord(tonic, triad, t) * envelope for triad in TRIADS]
    progression = rng.integers(len(TRIADS), size=8)
    tick_envelope = np.exp(-t * 80)
    beats = []
    for index in range(-(-samples // beat)):
        tick = np.diff(rng.standard_normal(beat + 1)) * tick_envelope  # diff: a bright tick
        accent = 1.5 if index % 4 == 0 else 0.75
        beats.append(chords[progression[index % 8]] + accent * tick)
    return _unit(np.concatenate(beats)[:samples])


NOISES: dict[str, Callable[[int, int], np.ndarray]] = {
    "steady": steady,
    "babble": babble,
    "music": music,
}


def mix(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_mask: np.ndarray
) -> np.ndarray:
    """speech + noise scaled so that the SNR over the masked (speech) samples is `snr_db`.

    Both powers are taken over the same samples, so the SNR is the one a listener meets while
    someone speaks, whatever the noise does in the pauses. A mixture peaking above PEAK is
    scaled down as a whole: the SNR stays, nothing clips.
    """
    if noise.shape != speech.shape or speech_mask.shape != speech.shape:
        raise ValueError("speech, noise and mask must have the same length")
    mask = speech_mask.astype(bool)
    if not mask.any():
        raise ValueError("the mask marks no speech")
    speech_power = np.mean(np.square(speech[mask], dtype=np.float64))
    noise_power = np.mean(np.square(noise[mask], dtype=np.float64))
    gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    mixture = speech.astype(np.float64) + gain * noise
    peak = np.abs(mixture).max()
    if peak > PEAK:
        mixture *= PEAK / peak
    return mixture.astype(np.float32)


def noisy(plan: str | Plan, kind: str, snr_db: float, seed: int = NOISE_SEED) -> Speech:
    """The plan's speech under `kind` noise at `snr_db`: same reference and mask."""
    clean = build(PLANS[plan] if isinstance(plan, str) else plan)
    noise = NOISES[kind](clean.audio.size, seed)
    return _frozen(clean._replace(audio=mix(clean.audio, noise, snr_db, clean.mask)))


# --- files ------------------------------------------------------------------------------


def duration(speech: Speech) -> float:
    return speech.audio.size / SAMPLE_RATE


def seconds_ranges(speech: Speech) -> list[list[float]]:
    return [
        [round(start / SAMPLE_RATE, 4), round(end / SAMPLE_RATE, 4)]
        for start, end in speech_ranges(speech.mask)
    ]


def _json(value: object) -> str:
    """Indented, with each [start, end] range on one line."""
    text = json.dumps(value, indent=1)
    return re.sub(r"\[\s+([\d.]+),\s+([\d.]+)\s+\]", r"[\1, \2]", text) + "\n"


def write_audio(path: Path, audio: np.ndarray) -> None:
    """16 kHz mono PCM16, WAV or FLAC by the suffix (FLAC at its smallest: the fixtures are
    committed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    level = {"compression_level": 1.0} if path.suffix == ".flac" else {}
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16", **level)


def write(directory: Path, name: str, speech: Speech, details: dict[str, object]) -> Path:
    """NAME.wav, NAME.txt (the reference) and NAME.json (speech ranges in seconds, details)."""
    path = directory / f"{name}.wav"
    write_audio(path, speech.audio)
    path.with_suffix(".txt").write_text(speech.text + "\n")
    described = {
        "duration": round(duration(speech), 3),
        **details,
        "speech": seconds_ranges(speech),
    }
    path.with_suffix(".json").write_text(_json(described))
    return path


def _voices(plan: Plan) -> str:
    return ", ".join(dict.fromkeys(voice for voice, _ in plan.speakers))


# file: (plan, (noise kind, SNR in dB) or clean)
FIXTURES: dict[str, tuple[Plan, tuple[str, float] | None]] = {
    "continuous.flac": (FIXTURE_CONTINUOUS, None),
    "noisy-5db.flac": (FIXTURE_SPARSE, ("steady", 5.0)),
    "noisy-0db.flac": (FIXTURE_SPARSE, ("steady", 0.0)),
    "babble-5db.flac": (FIXTURE_SPARSE, ("babble", 5.0)),
}


def write_fixtures(directory: Path = FIXTURE_DIR) -> list[tuple[Path, Speech]]:
    """The tests' accuracy clips as FLAC, and their manifest.json."""
    written, entries = [], []
    for file, (plan, noise) in FIXTURES.items():
        speech = build(plan) if noise is None else noisy(plan, *noise)
        kind, snr_db = noise or (None, None)
        write_audio(directory / file, speech.audio)
        written.append((directory / file, speech))
        entries.append(
            {
                "file": file,
                "text": speech.text,
                "duration": round(duration(speech), 3),
                "source": f"espeak-ng {espeak_version()} voices {_voices(plan)}, generated by "
                "python -m benchmarks.speech --test-fixtures",
                "noise": kind,
                "snr_db": snr_db,
                "speech": seconds_ranges(speech),
            }
        )
    manifest = {
        "note": "16 kHz mono PCM16 FLAC. Harvard sentences (lists 1-8) read by espeak-ng; "
        "'speech' holds the [start, end] seconds of each sentence; SNR is measured over those.",
        "clips": entries,
    }
    (directory / "manifest.json").write_text(_json(manifest))
    return written


def _describe(path: Path, speech: Speech) -> str:
    spoken_seconds = speech.mask.sum() / SAMPLE_RATE
    return f"{path}: {duration(speech):.1f} s, {spoken_seconds:.1f} s of speech"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the benchmark's accuracy audio.")
    parser.add_argument(
        "output", type=Path, nargs="?", help="directory; --test-fixtures: instead of its own"
    )
    parser.add_argument("--plan", action="append", choices=sorted(PLANS), help="default: all")
    parser.add_argument("--noise", choices=sorted(NOISES))
    parser.add_argument("--snr", type=float, help="dB over the speech, with --noise")
    parser.add_argument("--test-fixtures", action="store_true", help=f"write {FIXTURE_DIR}")
    args = parser.parse_args(argv)
    if args.test_fixtures:
        for path, speech in write_fixtures(args.output or FIXTURE_DIR):
            print(_describe(path, speech))
        return 0
    if args.output is None:
        parser.error("an output directory is needed")
    if (args.noise is None) != (args.snr is None):
        parser.error("--noise and --snr go together")
    for name in args.plan or PLANS:
        if args.noise is None:
            speech, details = build(PLANS[name]), {}
        else:
            speech = noisy(name, args.noise, args.snr)
            details = {"noise": args.noise, "snr_db": args.snr}
            name = f"{name}-{args.noise}-{args.snr:g}db"
        print(_describe(write(args.output, name, speech, details), speech))
    return 0


if __name__ == "__main__":
    sys.exit(main())
