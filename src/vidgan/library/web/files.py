"""Library files: by clip id (/files/ID/video|poster|preview) and by store path (/store/ab/<sha>.<ext>,
cached for good: the name is the content's hash). Both go through library_file."""

from __future__ import annotations

from pathlib import Path as FsPath

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse

from vidgan.library.catalog import Library
from vidgan.library.queries import export_name
from vidgan.library.tables import STORE, LibraryError
from vidgan.library.web.deps import ClipId, GalleryLibrary, live_clip

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

router = APIRouter()


def library_file(lib: Library, relative: str) -> FsPath:
    """A regular file inside the library root, or 404 (traversal, symlinks out of the root, missing files)."""
    try:
        path = lib.file(relative)
    except LibraryError:
        raise HTTPException(404, "not found") from None
    if not path.is_file() or not path.is_relative_to(lib.store):
        raise HTTPException(404, "not found")
    return path


def media_type(path: FsPath) -> str:
    return MEDIA_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")


@router.get("/files/{clip_id}/{kind}")
def clip_file(lib: GalleryLibrary, clip_id: ClipId, kind: str = Path(pattern="^(video|poster|preview)$"), download: bool = False):
    with lib.session() as s:
        clip = live_clip(s, clip_id)
        relative = {"video": clip.path, "poster": clip.poster_path, "preview": clip.preview_path}[kind]
        name = export_name({"id": clip.id, "format": clip.format})
    path = library_file(lib, relative)
    return FileResponse(path, media_type=media_type(path), filename=name if download and kind == "video" else None)


@router.get("/store/{relative:path}")
def store_file(lib: GalleryLibrary, relative: str):
    path = library_file(lib, f"{STORE}/{relative}")
    if (lib.store / "tmp") in path.parents:  # files an ingest has not placed yet
        raise HTTPException(404, "not found")
    return FileResponse(path, media_type=media_type(path), headers={"Cache-Control": "public, max-age=31536000, immutable"})
