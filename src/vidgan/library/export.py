"""Clips out of the library: a folder or zip with their files and a manifest."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from vidgan.library.catalog import Library
from vidgan.library.queries import ClipQuery, clip_dict, export_name, find_clips
from vidgan.library.tables import LibraryError, utcnow


def export_clips(lib: Library, query: ClipQuery, to: str | Path) -> tuple[int, Path]:
    """Copy the matching clips to a folder, or a .zip, with manifest.json (provenance, scores, tags, hashes)."""
    to = Path(to)
    with lib.session() as s:
        _, clips = find_clips(lib, s, query)
        entries = [clip_dict(c) for c in clips]
    if not entries:
        raise LibraryError(f"{lib.root}: no clips match; nothing exported")
    files = [(lib.file(e["file"]), export_name(e)) for e in entries]
    for e, (_, name) in zip(entries, files):
        e["export_file"] = name
    manifest = json.dumps({"library": str(lib.root), "exported": utcnow().isoformat(), "count": len(entries), "clips": entries}, indent=1)
    if to.suffix.lower() == ".zip":
        to.parent.mkdir(parents=True, exist_ok=True)
        write_zip(to, files, manifest)
    else:
        to.mkdir(parents=True, exist_ok=True)
        for source, name in files:
            shutil.copyfile(source, to / name)
        (to / "manifest.json").write_text(manifest)
    return len(entries), to


def write_zip(target, files: list[tuple[Path, str]], manifest: str) -> None:
    """Clips are already compressed: stored as they are; the manifest is deflated."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        for source, name in files:
            zf.write(source, name)
        zf.writestr("manifest.json", manifest, compress_type=zipfile.ZIP_DEFLATED)
