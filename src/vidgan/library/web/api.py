"""The JSON API under /api/ that the page talks to: listing, one clip, tag edits, zip downloads."""

from __future__ import annotations

import json
import os
import tempfile

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from vidgan.library.queries import ClipQuery, check_query, clip_dict, count_clips, export_name, facets, find_clips, parse_scores
from vidgan.library.tables import MAX_ID
from vidgan.library.web.deps import ClipId, EditRefusal, FromGallery, GalleryLibrary, live_clip
from vidgan.library.web.files import library_file

MAX_PAGE = 500
MAX_ZIP = 1000

router = APIRouter(prefix="/api")

# The ingest module (tag edits, zips) loads the codec layer and with it torch: seconds of start-up
# that a read-only gallery never needs, so the handlers that use it import it when first called.


@router.get("/info")
def info(lib: GalleryLibrary, refusal: EditRefusal):
    with lib.session() as s:
        return {"name": lib.root.name, "clips": count_clips(s), "allow_edit": refusal is None, "search": "fts5" if lib.fts else "like"}


@router.get("/facets")
def get_facets(lib: GalleryLibrary):
    with lib.session() as s:
        return facets(s)


@router.get("/clips")
def list_clips(
    lib: GalleryLibrary,
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


@router.get("/clips/{clip_id}")
def one_clip(lib: GalleryLibrary, clip_id: ClipId):
    with lib.session() as s:
        clip = live_clip(s, clip_id)
        return clip_dict(clip) | {"browser_video": clip.format in ("mp4", "webm")}


@router.put("/clips/{clip_id}/tags")
def put_tags(
    request: Request,
    lib: GalleryLibrary,
    refusal: EditRefusal,
    from_gallery: FromGallery,
    clip_id: ClipId,
    add: list[str] = Body([], max_length=50),
    remove: list[str] = Body([], max_length=50),
):
    if refusal:
        raise HTTPException(403, refusal)
    if not from_gallery:
        raise HTTPException(403, "cross-origin edits are refused; edit from the gallery's own page")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        # a page elsewhere can post a form without asking; a JSON body needs CORS permission, which we never give
        raise HTTPException(415, "send the edit as JSON (Content-Type: application/json)")
    with lib.session() as s:
        live_clip(s, clip_id)
    from vidgan.library.maintenance import edit_tags

    try:
        tags = edit_tags(lib, [clip_id], add, remove)[clip_id]
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    return {"id": clip_id, "tags": tags}


@router.get("/download")
def download(lib: GalleryLibrary, ids: str = Query(..., max_length=20 * MAX_ZIP, description="comma-separated clip ids")):
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
    files = [(library_file(lib, e["file"]), export_name(e)) for e in entries]
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
