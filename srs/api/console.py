"""The web console's static files, served by the daemon under ``/console/`` with a strict CSP.

The files ship inside the package (``srs/api/console/``), so an installed daemon serves the same
page a checkout does and the browser never fetches anything from elsewhere. The policy allows
scripts, styles, media and connections from this origin only and no inline code at all, so even a
recording whose metadata carries markup cannot run script in a supervisor's browser.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from srs.api.guard import CONSOLE_PREFIX

STATIC_DIR = Path(__file__).with_name("console")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a signed link in the address bar must not leak to anyone
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


def _static(name: str) -> Path | None:
    """A file of the console directory, or None; nothing outside it, nothing hidden, known types only."""
    parts = [p for p in name.split("/") if p]
    if any(p.startswith(".") or "\\" in p for p in parts):
        return None
    path = STATIC_DIR.joinpath(*parts) if parts else STATIC_DIR / "index.html"
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return None
    if not resolved.is_relative_to(STATIC_DIR.resolve()) or not resolved.is_file():
        return None
    return resolved if resolved.suffix in TYPES else None


def add_console(app: FastAPI) -> None:
    @app.get(CONSOLE_PREFIX, include_in_schema=False)
    def console_root() -> Response:
        return RedirectResponse(f"{CONSOLE_PREFIX}/", status_code=308)

    @app.get(f"{CONSOLE_PREFIX}/{{name:path}}", include_in_schema=False)
    @app.head(f"{CONSOLE_PREFIX}/{{name:path}}", include_in_schema=False)
    def console_file(request: Request, name: str) -> Response:
        path = _static(name)
        if path is None:
            return Response("not found\n", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {**SECURITY_HEADERS, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        response = Response(body, media_type=TYPES[path.suffix], headers=headers)
        if request.method == "HEAD":
            response.body = b""  # the headers (Content-Length too) stay those of the GET
        return response
