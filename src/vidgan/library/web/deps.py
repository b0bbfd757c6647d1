"""What the gallery's handlers take from the app (FastAPI dependencies): its library, whether it takes
edits, whether a request comes from the gallery's own page; and the one rule for "no such clip".

create_app keeps the per-app state on app.state; these read it back per request. They are async and
never raise, so they cost no worker thread and the handlers decide the order of their refusals.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from vidgan.library.catalog import Library
from vidgan.library.queries import get_clip
from vidgan.library.tables import MAX_ID, Clip


async def library(request: Request) -> Library:
    return request.app.state.library


async def edit_refusal(request: Request) -> str | None:
    """Why this gallery refuses tag edits, or None when it takes them."""
    lib = request.app.state.library
    if not request.app.state.allow_edit:
        return "this gallery is read-only; start it with `vidgan serve LIB --allow-edit` to edit tags"
    if lib.read_only:
        return f"the library is read-only ({lib.read_only}); tags cannot be edited"
    return None


async def same_origin(request: Request) -> bool:
    """A browser request that says where it comes from (Origin, Sec-Fetch-Site) must come from this
    gallery's own origin; requests without those headers (curl, scripts) are not browsers' and pass."""
    if request.headers.get("sec-fetch-site", "same-origin").lower() not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return origin != "null" and parts.scheme in ("http", "https") and parts.netloc.lower() == request.headers.get("host", "").lower()


GalleryLibrary = Annotated[Library, Depends(library)]
EditRefusal = Annotated[str | None, Depends(edit_refusal)]
FromGallery = Annotated[bool, Depends(same_origin)]
# An id outside 1..MAX_ID is a bad request (400), not a clip that is missing (404).
ClipId = Annotated[int, Path(ge=1, le=MAX_ID)]


def live_clip(session: Session, clip_id: int) -> Clip:
    """The clip with this id unless it is missing or deleted (404)."""
    clip = get_clip(session, clip_id, include_deleted=False)
    if clip is None:
        raise HTTPException(404, f"no clip {clip_id}")
    return clip
