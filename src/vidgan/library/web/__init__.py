"""The gallery: a FastAPI app over one library. `vidgan serve LIB` runs it with uvicorn.

The page (static/index.html + app.js) only talks to the JSON API under /api/. Files are served
by clip id (/files/ID/video|poster|preview) or by store path (/store/ab/<sha>.<ext>, immutable:
the name is the content's hash); both resolve the path, follow symlinks, and refuse anything that
is not a regular file inside the library root (404), and anything that is not an id (400).
Read-only unless created with allow_edit=True (`--allow-edit`): edits answer 403 otherwise.
Only Host headers naming this machine (or names given with `--allowed-host`) are accepted, even
when listening on 0.0.0.0, so a web page elsewhere cannot reach the gallery through DNS rebinding;
edits must also come from the gallery's own origin (Origin / Sec-Fetch-Site).

create_app builds the app; the routes live in pages.py, api.py and files.py and take the library and
the edit checks from the dependencies in deps.py, which read what create_app puts on app.state.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path as FsPath

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from vidgan.library.catalog import Library
from vidgan.library.web import api, files, pages

CSP = "default-src 'self'; img-src 'self'; media-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'"
LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def create_app(
    library: str | FsPath | Library, allow_edit: bool = False, host: str = "127.0.0.1", allowed_hosts: list[str] | None = None
) -> FastAPI:
    app = FastAPI(title="vidgan library", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.library = library if isinstance(library, Library) else Library.open(library)
    app.state.allow_edit = allow_edit
    # The Host allow-list holds even when listening on every address (0.0.0.0): the names and
    # addresses browsers may use are given explicitly (`--allowed-host`), so DNS rebinding cannot reach it.
    hosts = [*LOCAL_HOSTS, *([] if host in ("0.0.0.0", "::") else [host]), *(allowed_hosts or [])]
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(RequestValidationError, bad_request)
    for module in (pages, api, files):
        app.include_router(module.router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    app.state.library.close()


async def bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
    where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in err.errors()[:3])
    return JSONResponse({"detail": f"bad request: {where}"}, status_code=400)


class SecurityHeaders:
    """No sniffing, no inline or foreign scripts, no framing, no referrer (plain ASGI: cheap per request)."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", CSP.encode()), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
