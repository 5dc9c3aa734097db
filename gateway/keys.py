"""Typed keys for what the application shares between handlers."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web

from gateway.settings import Settings
from gateway.triton_pool import TritonPool

SETTINGS = web.AppKey("settings", Settings)
ASR = web.AppKey("asr", TritonPool)
DRAINING = web.AppKey("draining", asyncio.Event)  # set on shutdown: streams flush and close
STREAMS = web.AppKey("streams", weakref.WeakSet[web.WebSocketResponse])
