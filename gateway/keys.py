"""Typed keys for what the application shares between handlers."""

from __future__ import annotations

import weakref

from aiohttp import web

from gateway.settings import Settings
from gateway.triton_backend import TritonAsr

SETTINGS = web.AppKey("settings", Settings)
ASR = web.AppKey("asr", TritonAsr)
STREAMS = web.AppKey("streams", weakref.WeakSet[web.WebSocketResponse])
