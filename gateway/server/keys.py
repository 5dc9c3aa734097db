"""Typed keys for what the application shares between handlers."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web

from gateway.server.settings import Settings
from gateway.modes.step_clock import StepClock
from gateway.backend.triton_pool import TritonPool
from gateway.modes.vad import StreamScorer

SETTINGS = web.AppKey("settings", Settings)
ASR = web.AppKey("asr", TritonPool)
STEP_CLOCK = web.AppKey("step_clock", StepClock)  # the beat live streams step on
DRAINING = web.AppKey("draining", asyncio.Event)  # set on shutdown: streams flush and close
STREAMS = web.AppKey("streams", weakref.WeakSet[web.WebSocketResponse])
STREAM_VAD = web.AppKey("stream_vad", StreamScorer)  # scores every stream's frames together
