"""G.711 telephone audio (ITU-T G.711): μ-law and A-law bytes to float samples.

Telephony and the Realtime API's `audio/pcmu` / `audio/pcma` formats carry 8-bit companded
samples at 8 kHz. Each byte stands for one of 256 linear 16-bit values, so decoding is a
table lookup; the tables are built once from the standard's bit layout.
"""

from __future__ import annotations

import numpy as np

MULAW_BIAS = 0x84
ALAW_TOGGLE = 0x55  # A-law bytes are sent with their even bits inverted


def _mulaw_value(byte: int) -> int:
    code = ~byte & 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def _alaw_value(byte: int) -> int:
    code = byte ^ ALAW_TOGGLE
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    if exponent == 0:
        magnitude = (mantissa << 4) + 8
    else:
        magnitude = ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude


def _table(value_of) -> np.ndarray:
    return np.array([value_of(byte) for byte in range(256)], np.float32) / 32768.0


MULAW = _table(_mulaw_value)  # byte → sample in [-1, 1]
ALAW = _table(_alaw_value)


def decode_mulaw(data: bytes) -> np.ndarray:
    return MULAW[np.frombuffer(data, np.uint8)]


def decode_alaw(data: bytes) -> np.ndarray:
    return ALAW[np.frombuffer(data, np.uint8)]
