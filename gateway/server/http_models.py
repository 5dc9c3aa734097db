"""OpenAI's models API, `GET /v1/models` and `GET /v1/models/{model}`, and the check of the
`model` field of `/v1/audio/transcriptions` and `/v1/audio/translations`.

What is served is asked of the backend on every call (Triton's model config names the weights
it serves), never configured in the gateway: the weights by their name (`tiny.en`, `base`, ...)
and `whisper-1`, OpenAI's name, as an alias of them, so clients written for OpenAI work
unchanged. A `model` that is neither is OpenAI's 404 `model_not_found`; translating with
English-only weights is a 400 that says which weights would do it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from gateway.core.contract import AsrError, AsrUnavailable, ServedModel
from gateway.server.errors import RETRY_AFTER_S, ApiError
from gateway.server.keys import ASR

logger = logging.getLogger(__name__)

ALIAS = "whisper-1"  # OpenAI's name for its Whisper: the served weights answer to it too
OWNED_BY = "hermes"
# A multilingual export the project makes from the package index (export/sources.py)
MULTILINGUAL_EXAMPLE = "base"
# when this process first saw each served weights, as the model objects' `created`
FIRST_SEEN = web.AppKey("models_first_seen", dict[str, int])


async def served_model(request: web.Request) -> ServedModel:
    """What the backend serves now; a 503 when it cannot say."""
    try:
        model = await request.app[ASR].served_model()
    except AsrUnavailable as exc:
        raise ApiError(503, str(exc), "model_unavailable", retry_after=RETRY_AFTER_S) from exc
    except AsrError as exc:
        logger.error("the backend cannot say which model it serves: %s", exc)
        raise ApiError(
            500,
            "the speech model server did not say which model it serves; see the gateway's log",
            "model_error",
            retry_after=RETRY_AFTER_S,
        ) from exc
    request.app[FIRST_SEEN].setdefault(model.weights, int(time.time()))
    return model


def model_not_found(name: str, served: ServedModel) -> ApiError:
    return ApiError(
        404,
        f"The model `{name}` does not exist or you do not have access to it. This server "
        f"serves `{served.weights}` (also as `{ALIAS}`); GET /v1/models lists it.",
        "model_not_found",
        param="model",
    )


def not_multilingual(served: ServedModel) -> ApiError:
    return ApiError(
        400,
        f"{served.weights} is English-only and cannot translate; serve multilingual weights "
        f"such as {MULTILINGUAL_EXAMPLE}: make run WEIGHTS={MULTILINGUAL_EXAMPLE} (or hermes "
        f"up --weights {MULTILINGUAL_EXAMPLE})",
        "model_not_multilingual",
        param="model",
    )


async def check_model(request: web.Request, name: str | None, task: str) -> None:
    """For an upload to the OpenAI routes: `name` (its `model` field; None when absent) must
    be served, and `translate` needs multilingual weights. Asks the backend only then."""
    if name is None and task != "translate":
        return
    served = await served_model(request)
    if name is not None and name not in (served.weights, ALIAS):
        raise model_not_found(name, served)
    if task == "translate" and not served.multilingual:
        raise not_multilingual(served)


def _model_object(request: web.Request, model_id: str, served: ServedModel) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": request.app[FIRST_SEEN][served.weights],
        "owned_by": OWNED_BY,
    }


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models`: the served weights, then their alias `whisper-1`."""
    served = await served_model(request)
    return web.json_response(
        {
            "object": "list",
            "data": [_model_object(request, name, served) for name in (served.weights, ALIAS)],
        }
    )


async def retrieve_model(request: web.Request) -> web.Response:
    """`GET /v1/models/{model}`: the served weights or `whisper-1`; else a 404."""
    served = await served_model(request)
    name = request.match_info["model"]
    if name not in (served.weights, ALIAS):
        raise model_not_found(name, served)
    return web.json_response(_model_object(request, name, served))
