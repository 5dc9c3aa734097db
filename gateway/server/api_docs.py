"""The API's documents and its interactive page: `GET /openapi.json` (the HTTP routes),
`GET /asyncapi.json` (the WebSockets) and `GET /docs`, Swagger UI on the first, with its files
served from the `swagger-ui-bundle-v2` package: nothing is fetched from elsewhere.

All of them are public, like the live page: they describe the API (as the repository's docs
do) and hold no data, and Swagger UI fetches the document without a key. The calls the page
makes ("Try it out") are same-origin API calls that need a key like any other when keys are on.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from gateway.server import asyncapi, openapi
from gateway.server.errors import ApiError

PAGE_DIR = Path(__file__).resolve().parent / "apidocs"
# The page's files by name, Swagger UI's and ours: a flat list, no path from a URL reaches
# the disk
SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
ASSETS = {name: Path(str(swagger_ui_path / name)) for name in SWAGGER_UI_FILES} | {
    "docs.js": PAGE_DIR / "docs.js"
}
PUBLIC = frozenset({"/docs", "/docs/{name}", "/openapi.json", openapi.ASYNCAPI_PATH})
DOCUMENTS = web.AppKey("api_documents", dict[str, bytes])  # path -> the document, as served


def install(app: web.Application, public: frozenset[str]) -> None:
    """Add the routes; the documents are made once, with the app's public routes."""
    app[DOCUMENTS] = {
        "/openapi.json": json.dumps(openapi.document(public)).encode(),
        openapi.ASYNCAPI_PATH: json.dumps(asyncapi.document()).encode(),
    }
    app.add_routes(
        [
            web.get("/openapi.json", _document),
            web.get(openapi.ASYNCAPI_PATH, _document),
            web.get("/docs", _page),
            web.get("/docs/{name}", _asset),
        ]
    )


async def _document(request: web.Request) -> web.Response:
    body = request.app[DOCUMENTS][request.path]
    return web.Response(body=body, content_type="application/json")


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE_DIR / "docs.html")


async def _asset(request: web.Request) -> web.FileResponse:
    if (path := ASSETS.get(request.match_info["name"])) is None:
        raise ApiError(404, f"no docs file {request.match_info['name']!r}", "not_found")
    return web.FileResponse(path)
