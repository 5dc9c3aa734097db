"""Typed keys for what the application shares between handlers, and the model as they reach it."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web

from gateway.core.contract import ModelBackend
from gateway.modes.file_work import FileWorkGate, WindowSlots
from gateway.modes.step_clock import StepClock
from gateway.modes.vad import StreamScorer
from gateway.server.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
ASR = web.AppKey("asr", ModelBackend)  # the Triton pool unless `create_app` was given one
STEP_CLOCK = web.AppKey("step_clock", StepClock)  # the beat live streams step on
DRAINING = web.AppKey("draining", asyncio.Event)  # set on shutdown: streams flush and close
STREAMS = web.AppKey("streams", weakref.WeakSet[web.WebSocketResponse])
STREAM_VAD = web.AppKey("stream_vad", StreamScorer)  # scores every stream's frames together
# file-priority windows at the model, all together, while live streams are open
FILE_WORK = web.AppKey("file_work", WindowSlots)


def transcriber(app: web.Application) -> FileWorkGate:
    """The model as the handlers send it windows: file work through the `FILE_WORK` gate."""
    return FileWorkGate(app[ASR], app[FILE_WORK])
