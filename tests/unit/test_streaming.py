"""Stream configuration and frame decoding (pure parts of real-time mode)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.streaming import FrameDecoder, StreamConfig, StreamProtocolError, StreamSession
from gateway.transcript import Word


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
    ],
)
def test_bad_configs_say_what_is_wrong(message, error) -> None:
    with pytest.raises(StreamProtocolError, match=error):
        StreamConfig.from_message({"type": "config", **message})


def test_pcm16_frames_become_floats() -> None:
    decoder = FrameDecoder(StreamConfig())
    samples = decoder.decode(np.array([0, 16384, -32768], "<i2").tobytes())
    assert samples.dtype == np.float32 and list(samples) == [0.0, 0.5, -1.0]


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
    assert session.buffer_start == 10.0 and session.buffer.size == 30 * 16000
    assert session.drop_backlog("overload") == []


def test_a_buffer_within_one_window_is_kept() -> None:
    session = StreamSession(backend=None, config=StreamConfig(), min_new_audio_s=0.5)
    session.append(np.zeros(29 * 16000, np.float32))
    assert session.drop_backlog("model_unavailable") == []
    assert session.buffer.size == 29 * 16000
