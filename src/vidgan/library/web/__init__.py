"""The gallery: a FastAPI app over one library. `vidgan serve LIB` runs it with uvicorn.

The page (static/index.html + app.js) only talks to the JSON API under /api/. Files are served
by clip id (/files/ID/video|poster|preview) or by store path (/store/ab/<sha>.<ext>, immutable:
the name is the content's hash); both resolve the path, follow symlinks, and refuse anything that
is not a regular file inside the library root (404), and anything that is not an id (400).
Read-only unless created with allow_edit=True (`--allow-edit`): edits answer 403 otherwise.
Only Host headers naming this machine (or names given with `--allowed-host`) are accepted, even
when listening on 0.0.0.0, so a web page elsewhere cannot reach the gallery through DNS rebinding;
edits must also come from the gallery's own origin (Origin / Sec-Fetch-Site).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path as FsPath

from fastapi import Body, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.middleware.trustedhost import TrustedHostMiddleware

from vidgan.library.catalog import Library
from vidgan.library.queries import ClipQuery, check_query, clip_dict, count_clips, export_name, facets, find_clips, get_clip, parse_scores
from vidgan.library.tables import MAX_ID, STORE, LibraryError

STATIC = FsPath(__file__).parent / "static"
PAGES = {"app.js": "text/javascript", "style.css": "text/css"}
MEDIA_TYPES = {
    "mp4": "video/mp4",
    "webm": "video/webm",
    "gif": "image/gif",
    "apng": "image/apng",
    "png": "image/png",
    "webp": "image/webp",
    "avi": "video/x-msvideo",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "m4v": "video/mp4",
}
MAX_PAGE = 500
MAX_ZIP = 1000
CSP = "default-src 'self'; img-src 'self'; media-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'"


# The ingest module (tag edits, zips) loads the codec layer and with it torch: seconds of start-up
# that a read-only gallery never needs, so the handlers that use it import it when first called.


def create_app(
    library: str | FsPath | Library, allow_edit: bool = False, host: str = "127.0.0.1", allowed_hosts: list[str] | None = None
) -> FastAPI:
    lib = library if isinstance(library, Library) else Library.open(library)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        lib.close()

    app = FastAPI(title="vidgan library", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.library, app.state.allow_edit = lib, allow_edit
    # The Host allow-list holds even when listening on every address (0.0.0.0): the names and
    # addresses browsers may use are given explicitly (`--allowed-host`), so DNS rebinding cannot reach it.
    local = ["127.0.0.1", "localhost", "::1", "[::1]"]
    hosts = [*local, *([] if host in ("0.0.0.0", "::") else [host]), *(allowed_hosts or [])]
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    editable = allow_edit and not lib.read_only

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError):
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in err.errors()[:3])
        return JSONResponse({"detail": f"bad request: {where}"}, status_code=400)

    # -- pages

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/clip/{clip_id}", include_in_schema=False)
    def clip_page(clip_id: int = Path(ge=1, le=MAX_ID)):
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in PAGES:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=PAGES[name])

    # -- JSON API

    @app.get("/api/info")
    def info():
        with lib.session() as s:
            return {"name": lib.root.name, "clips": count_clips(s), "allow_edit": editable, "search": "fts5" if lib.fts else "like"}

    @app.get("/api/facets")
    def get_facets():
        with lib.session() as s:
            return facets(s)

    @app.get("/api/clips")
    def list_clips(
        model: str | None = Query(None, max_length=200),
        label: str | None = Query(None, max_length=200),
        text: str | None = Query(None, max_length=500),
        tag: list[str] = Query([]),
        min_score: list[str] = Query([], description="METRIC=V"),
        sort: str = Query("-id", max_length=120),
        limit: int = Query(100, ge=1, le=MAX_PAGE),
        offset: int = Query(0, ge=0, le=MAX_ID),
    ):
        try:
            query = ClipQuery(
                model=model or None,
                label=label or None,
                text=text or None,
                tags=[t for t in tag if t],
                min_scores=parse_scores(m for m in min_score if m),
                sort=sort,
                limit=limit,
                offset=offset,
            )
            check_query(query)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        with lib.session() as s:
            total, clips = find_clips(lib, s, query)
            return {"total": total, "offset": offset, "clips": [clip_dict(c, full=False) for c in clips]}

    @app.get("/api/clips/{clip_id}")
    def one_clip(clip_id: int = Path(ge=1, le=MAX_ID)):
        with lib.session() as s:
            clip = get_clip(s, clip_id, include_deleted=False)
            if clip is None:
                raise HTTPException(404, f"no clip {clip_id}")
            return clip_dict(clip) | {"browser_video": clip.format in ("mp4", "webm")}

    @app.put("/api/clips/{clip_id}/tags")
    def put_tags(
        request: Request,
        clip_id: int = Path(ge=1, le=MAX_ID),
        add: list[str] = Body([], max_length=50),
        remove: list[str] = Body([], max_length=50),
    ):
        if not allow_edit:
            raise HTTPException(403, "this gallery is read-only; start it with `vidgan serve LIB --allow-edit` to edit tags")
        if lib.read_only:
            raise HTTPException(403, f"the library is read-only ({lib.read_only}); tags cannot be edited")
        if not same_origin(request):
            raise HTTPException(403, "cross-origin edits are refused; edit from the gallery's own page")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            # a page elsewhere can post a form without asking; a JSON body needs CORS permission, which we never give
            raise HTTPException(415, "send the edit as JSON (Content-Type: application/json)")
        with lib.session() as s:
            if get_clip(s, clip_id, include_deleted=False) is None:
                raise HTTPException(404, f"no clip {clip_id}")
        from vidgan.library.maintenance import edit_tags

        try:
            tags = edit_tags(lib, [clip_id], add, remove)[clip_id]
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        return {"id": clip_id, "tags": tags}

    @app.get("/api/download")
    def download(ids: str = Query(..., max_length=20 * MAX_ZIP, description="comma-separated clip ids")):
        from vidgan.library.export import write_zip

        try:
            wanted = list(dict.fromkeys(int(i) for i in ids.split(",") if i.strip()))
        except ValueError:
            raise HTTPException(400, "ids: comma-separated clip ids, e.g. 1,2,3") from None
        if not wanted or len(wanted) > MAX_ZIP or any(not 0 < i <= MAX_ID for i in wanted):
            raise HTTPException(400, f"ids: 1 to {MAX_ZIP} clip ids, each 1..{MAX_ID}")
        with lib.session() as s:
            _, clips = find_clips(lib, s, ClipQuery(ids=wanted, sort="id"))
            entries = [clip_dict(c) for c in clips]
        missing = sorted(set(wanted) - {e["id"] for e in entries})
        if missing:
            raise HTTPException(404, f"no clip {', '.join(map(str, missing[:10]))}")
        files = [(_library_file(lib, e["file"]), export_name(e)) for e in entries]
        for e, (_, name) in zip(entries, files):
            e["export_file"] = name
        fd, name = tempfile.mkstemp(prefix="vidgan-", suffix=".zip")
        with os.fdopen(fd, "wb") as fh:
            write_zip(fh, files, json.dumps({"library": lib.root.name, "count": len(entries), "clips": entries}, indent=1))
        return FileResponse(
            name,
            media_type="application/zip",
            filename=f"{lib.root.name}-{len(entries)}-clips.zip",
            background=BackgroundTask(os.unlink, name),
        )

    # -- files

    @app.get("/files/{clip_id}/{kind}")
    def clip_file(clip_id: int = Path(ge=1, le=MAX_ID), kind: str = Path(pattern="^(video|poster|preview)$"), download: bool = False):
        with lib.session() as s:
            clip = get_clip(s, clip_id, include_deleted=False)
            if clip is None:
                raise HTTPException(404, f"no clip {clip_id}")
            relative = {"video": clip.path, "poster": clip.poster_path, "preview": clip.preview_path}[kind]
            name = export_name({"id": clip.id, "format": clip.format})
        path = _library_file(lib, relative)
        suffix = path.suffix.lstrip(".")
        return FileResponse(
            path, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"), filename=name if download and kind == "video" else None
        )

    @app.get("/store/{relative:path}")
    def store_file(relative: str):
        path = _library_file(lib, f"{STORE}/{relative}")
        if (lib.store / "tmp") in path.parents:
            raise HTTPException(404, "not found")
        return FileResponse(
            path,
            media_type=MEDIA_TYPES.get(path.suffix.lstrip("."), "application/octet-stream"),
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    return app


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


def same_origin(request: Request) -> bool:
    """A browser request that says where it comes from (Origin, Sec-Fetch-Site) must come from this
    gallery's own origin; requests without those headers (curl, scripts) are not browsers' and pass."""
    from urllib.parse import urlsplit

    if request.headers.get("sec-fetch-site", "same-origin").lower() not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return origin != "null" and parts.scheme in ("http", "https") and parts.netloc.lower() == request.headers.get("host", "").lower()


def _library_file(lib: Library, relative: str) -> FsPath:
    """A regular file inside the library root, or 404 (traversal, symlinks out of the root, missing files)."""
    try:
        path = lib.file(relative)
    except LibraryError:
        raise HTTPException(404, "not found") from None
    if not path.is_file() or not path.is_relative_to(lib.store):
        raise HTTPException(404, "not found")
    return path
