"""benchmarks.speech: noise mixed at the asked SNR over the speech, deterministic generators.

The pure parts run anywhere; what synthesizes speech is skipped where espeak-ng is missing.
"""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import soundfile

from benchmarks import speech
from gateway.modes.audio import SAMPLE_RATE

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)


def power_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(audio, dtype=np.float64))))


def fake_speech(seconds: float = 6.0, level: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Tone bursts (speech) between quiet stretches (pauses), and the mask of the bursts."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    mask = (t % 1.5) < 0.9
    audio = np.where(mask, level * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(7 * t)), 0)
    return audio.astype(np.float32), mask


@pytest.mark.parametrize("kind", ["steady", "music"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 20.0])
def test_mix_gives_the_snr_over_the_speech(kind: str, snr_db: float) -> None:
    clean, mask = fake_speech()
    noise = speech.NOISES[kind](clean.size, 3)
    mixture = speech.mix(clean, noise, snr_db, mask)
    added = mixture.astype(np.float64) - clean
    assert power_db(clean[mask]) - power_db(added[mask]) == pytest.approx(snr_db, abs=0.1)
    assert mixture.dtype == np.float32 and mixture.shape == clean.shape


def test_mix_never_clips_and_keeps_the_snr() -> None:
    clean, mask = fake_speech(level=0.6)  # peaks at 0.9: the noise pushes it past full scale
    noise = speech.steady(clean.size, 3)
    loud = speech.mix(clean, noise, -5.0, mask)
    quiet = speech.mix(clean / 10, noise, -5.0, mask)  # far from full scale: not scaled
    assert np.abs(loud).max() == pytest.approx(speech.PEAK, abs=1e-6)
    # the loud mixture is the quiet one scaled as a whole: the same SNR
    scale = np.dot(loud, quiet) / np.dot(quiet, quiet)
    assert 1 < scale < 10
    assert np.abs(loud - scale * quiet).max() < 1e-5


def test_mix_refuses_what_it_cannot_measure() -> None:
    clean, mask = fake_speech()
    with pytest.raises(ValueError, match="same length"):
        speech.mix(clean, speech.steady(clean.size - 1), 5.0, mask)
    with pytest.raises(ValueError, match="no speech"):
        speech.mix(clean, speech.steady(clean.size), 5.0, np.zeros_like(mask))


@pytest.mark.parametrize("kind", ["steady", "music"])
def test_noise_is_the_same_for_a_seed(kind: str) -> None:
    generate = speech.NOISES[kind]
    first = generate(SAMPLE_RATE * 3 + 7, 1)
    assert first.shape == (SAMPLE_RATE * 3 + 7,) and first.dtype == np.float32
    assert np.array_equal(first, generate(first.size, 1))
    assert not np.array_equal(first, generate(first.size, 2))
    assert power_db(first) == pytest.approx(0, abs=0.01)  # unit RMS: mix() sets the level


def test_steady_noise_is_pink() -> None:
    """Equal power per octave: 100-200 Hz carries about what 1.6-3.2 kHz does."""
    noise = speech.steady(SAMPLE_RATE * 10, 4).astype(np.float64)
    power = np.abs(np.fft.rfft(noise)) ** 2
    frequencies = np.fft.rfftfreq(noise.size, 1 / SAMPLE_RATE)

    def octave(low: float) -> float:
        return float(power[(frequencies >= low) & (frequencies < 2 * low)].sum())

    assert 10 * np.log10(octave(100) / octave(1600)) == pytest.approx(0, abs=1.0)


def test_music_changes_every_beat() -> None:
    """A chord a beat: the spectra of successive beats differ, and a beat repeats 8 later."""
    beat = round(speech.BEAT * SAMPLE_RATE)
    music = speech.music(beat * 16, 5).reshape(16, beat)
    spectra = np.abs(np.fft.rfft(music, axis=1))
    assert np.corrcoef(spectra[0], spectra[8])[0, 1] > 0.9  # the progression is 8 chords long
    assert min(np.corrcoef(spectra[i], spectra[i + 1])[0, 1] for i in range(8)) < 0.9


def test_speech_ranges_are_the_masks_runs() -> None:
    mask = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    assert speech.speech_ranges(mask) == [(0, 2), (4, 5), (6, 9)]
    assert speech.speech_ranges(np.zeros(4, bool)) == []


@needs_espeak
def test_babble_is_the_same_for_a_seed() -> None:
    first = speech.babble(SAMPLE_RATE * 40, 1)  # longer than a talker: looped
    assert first.shape == (SAMPLE_RATE * 40,) and first.dtype == np.float32
    assert np.array_equal(first, speech.babble(first.size, 1))
    assert not np.array_equal(first, speech.babble(first.size, 2))


@needs_espeak
def test_a_plan_lays_sentences_between_its_pauses() -> None:
    plan = speech.FIXTURE_SPARSE
    built = speech.build(plan)
    ranges = speech.speech_ranges(built.mask)
    assert len(ranges) == len(plan.sentences)
    assert built.text == " ".join(speech.SENTENCES[index] for index in plan.sentences)
    pauses = [ranges[0][0]] + [b[0] - a[1] for a, b in itertools.pairwise(ranges)]
    pauses.append(built.audio.size - ranges[-1][1])
    assert pauses == [4 * SAMPLE_RATE] * (len(plan.sentences) + 1)
    quiet = built.audio[~built.mask]
    assert power_db(quiet) == pytest.approx(20 * np.log10(speech.NOISE_RMS), abs=0.5)
    assert np.array_equal(built.audio, speech.build(plan).audio)


@needs_espeak
def test_committed_fixtures_are_what_the_generator_writes(tmp_path) -> None:
    """Regenerate them (python -m benchmarks.speech --test-fixtures) when this fails."""
    committed = json.loads((speech.FIXTURE_DIR / "manifest.json").read_text())
    if speech.espeak_version() not in committed["clips"][0]["source"]:
        pytest.skip("another espeak-ng version synthesizes other samples")
    speech.write_fixtures(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == committed
    for clip in committed["clips"]:
        ours, rate = soundfile.read(tmp_path / clip["file"], dtype="int16")
        theirs, _ = soundfile.read(speech.FIXTURE_DIR / clip["file"], dtype="int16")
        assert rate == SAMPLE_RATE and np.array_equal(ours, theirs)
