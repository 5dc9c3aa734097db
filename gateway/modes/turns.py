"""Turns of speech in a live stream: where someone starts speaking and where they stop.

The voice detector's scores (already computed for the stream's steps) are read with the
client's own threshold and without padding; a turn starts at the first speech frame and
stops once `silence_s` of non-speech follows the last. `/stream-audio` reports these as
`speech_started` / `speech_stopped`; the Realtime API's server VAD ends an item there.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.stream_buffer import StreamBuffer
from gateway.modes.vad import VadConfig

# Silero's own convention: a frame is released from speech below the threshold minus this
RELEASE_BELOW_THRESHOLD = 0.15
MIN_RELEASE = 0.01
# How much new audio (stream time) makes a new look worth its cost: a client sending tiny
# frames must not make every frame re-read the buffer's speech regions.
LOOK_EVERY_SECONDS = 0.1


@dataclass(frozen=True)
class TurnConfig:
    """OpenAI's `server_vad` settings, in seconds."""

    threshold: float = 0.5  # speech probability that starts speech (0..1)
    prefix_padding_s: float = 0.3  # audio before the speech that belongs to the turn
    silence_s: float = 0.5  # non-speech after the last speech that ends the turn

    @property
    def vad(self) -> VadConfig:
        return VadConfig(
            threshold=self.threshold,
            release=max(self.threshold - RELEASE_BELOW_THRESHOLD, MIN_RELEASE),
            min_silence_seconds=min(VadConfig.min_silence_seconds, self.silence_s),
            pad_seconds=0.0,
        )


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # stream time, the prefix padding included


@dataclass(frozen=True)
class SpeechStopped:
    at: float  # stream time: the end of the last speech plus the silence that ended it


TurnEvent = SpeechStarted | SpeechStopped


class TurnDetector:
    """Follows one stream's buffer; `update` after audio is appended says what changed."""

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.speaking = False
        self.after = 0.0  # stream time the next turn may start from (the last stop)
        self.looked_at = 0.0  # `received` at the last look

    async def update(self, buffer: StreamBuffer) -> list[TurnEvent]:
        """The starts and stops in the audio received since the last stop, in order (a
        client sending faster than real time may finish several turns at once). The audio
        is looked at once the detector has scored it, with every stream's frames in a round
        off the event loop (`StreamBuffer.catch_up`)."""
        if buffer.received - self.looked_at < LOOK_EVERY_SECONDS:
            return []
        self.looked_at = buffer.received
        await buffer.catch_up()
        config = self.config
        scored = buffer.scored_length
        heard_until = buffer.start + scored / SAMPLE_RATE
        regions = [r for r in buffer.speech_regions(scored, config.vad) if r[1] > self.after]
        events: list[TurnEvent] = []
        for index, (start, end) in enumerate(regions):
            if not self.speaking:
                self.speaking = True
                events.append(SpeechStarted(max(start - config.prefix_padding_s, self.after)))
            next_start = regions[index + 1][0] if index + 1 < len(regions) else heard_until
            if next_start - end >= config.silence_s:
                self.speaking = False
                self.after = end + config.silence_s
                events.append(SpeechStopped(self.after))
        return events
