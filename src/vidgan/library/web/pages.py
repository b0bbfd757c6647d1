"""The page itself: index.html for / and /clip/ID (the script reads the id from the URL), and its two assets."""

from __future__ import annotations

from pathlib import Path as FsPath

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from vidgan.library.web.deps import ClipId

STATIC = FsPath(__file__).parent / "static"
# Only these names: a request for anything else in static/ (or beside it) is 404.
PAGES = {"app.js": "text/javascript", "style.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index():
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/clip/{clip_id}")
def clip_page(clip_id: ClipId):
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/static/{name}")
def static(name: str):
    if name not in PAGES:
        raise HTTPException(404, "not found")
    return FileResponse(STATIC / name, media_type=PAGES[name])
