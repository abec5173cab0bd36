"""The management web UI: static files of management/ui/ served at `/` and `/ui/{name}`.

The pages are plain HTML, CSS and JavaScript talking to the /api endpoints from the browser
(with the credentials the user types into its login form), so these routes need no auth.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).resolve().parent / "ui"
_CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_NO_CACHE = {"Cache-Control": "no-cache"}


def _file_response(name: str) -> web.Response:
    path = UI_DIR / name
    content_type = _CONTENT_TYPES.get(path.suffix)
    # only plain files directly inside ui/, of a known type: no "..", no sub-directories
    if content_type is None or "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound(text="Not Found")
    body = path.read_bytes()
    if content_type.startswith("text/"):
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers=_NO_CACHE)
    return web.Response(body=body, content_type=content_type, headers=_NO_CACHE)


async def index(request: web.Request) -> web.Response:
    return _file_response("index.html")


async def static(request: web.Request) -> web.Response:
    return _file_response(request.match_info["name"])


ROUTES = [
    ("GET", "/", index),
    ("GET", "/ui/{name}", static),
]
