"""Keeping a library sound: check and repair, soft delete, garbage collection, tags."""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from vidgan.data.video_io import iter_frames
from vidgan.library.catalog import Library
from vidgan.library.hashing import PREVIEW_FRAMES, digest_frames, sha256_file
from vidgan.library.ingest import lock, normalize_tag
from vidgan.library.queries import get_clip
from vidgan.library.store import TMP_GRACE, tmp_dir, write_preview
from vidgan.library.tables import STORE, Clip, LibraryError, Provenance, Tag, asset_path, derived_path, utcnow


@dataclass
class CheckReport:
    clips: int = 0
    missing_files: list[int] = field(default_factory=list)  # rows whose clip file is gone
    missing_derived: list[int] = field(default_factory=list)  # poster/preview gone (rebuilt from the clip)
    corrupt: list[int] = field(default_factory=list)  # file bytes no longer match sha256 (--verify)
    outside: list[int] = field(default_factory=list)  # rows whose path leads outside the store
    orphans: list[str] = field(default_factory=list)  # store files no row names
    stale_tmp: list[str] = field(default_factory=list)
    search_index_stale: bool = False
    repaired: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (
            len(self.missing_files)
            + len(self.missing_derived)
            + len(self.corrupt)
            + len(self.outside)
            + len(self.orphans)
            + len(self.stale_tmp)
            + int(self.search_index_stale)
        )

    def lines(self) -> list[str]:
        out = [f"{self.clips} clips checked"]
        for name, items in [
            ("clip rows without their file", self.missing_files),
            ("clips missing a poster or preview", self.missing_derived),
            ("clip files whose bytes changed", self.corrupt),
            ("clip rows pointing outside the store", self.outside),
            ("files no clip row names (orphans)", self.orphans),
            ("stale temporary files", self.stale_tmp),
        ]:
            if items:
                shown = ", ".join(map(str, items[:10])) + (f", ... ({len(items)} in all)" if len(items) > 10 else "")
                out.append(f"{len(items)} {name}: {shown}")
        if self.search_index_stale:
            out.append("the text search index is out of step with the clips")
        out += self.repaired
        return out


def check_library(lib: Library, repair: bool = False, verify: bool = False, grace: float = TMP_GRACE) -> CheckReport:
    """Find (and with repair, fix) what a crash or a hand edit can leave: rows without files
    (the rows are dropped), orphan files (deleted), missing posters/previews (rebuilt), stale
    temporaries older than `grace` seconds, an out-of-step search index (rebuilt). Corrupt files
    (--verify) are reported, never touched."""
    report = CheckReport()
    with lib.write_session() if repair else lib.session() as session:
        if repair:
            lock(session)
        # one walk over the store (symlinks are listed, never followed), then plain set lookups:
        # seconds less than a stat and a realpath per file on a library of 10,000 clips
        files: dict[str, bool] = {}  # path relative to the root -> is a symlink
        root, now = str(lib.root), time.time()
        for folder, dirs, names in os.walk(lib.store):
            in_tmp = os.path.relpath(folder, root).replace(os.sep, "/").split("/")[:2] == [STORE, "tmp"]
            for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                file = os.path.join(folder, name)
                relative = os.path.relpath(file, root).replace(os.sep, "/")
                if in_tmp:
                    if now - os.lstat(file).st_mtime > grace:
                        report.stale_tmp.append(relative)
                else:
                    files[relative] = os.path.islink(file)
        rows = session.execute(select(Clip.id, Clip.path, Clip.sha256, Provenance.first_frame_sha256).join(Provenance, isouter=True)).all()
        report.clips = len(rows)
        named: set[str] = set()
        present = lambda relative: files.get(relative) is False  # noqa: E731 - a regular file (the store never holds symlinks)
        for clip_id, relative, sha, first_frame_sha in rows:
            if not _store_relative(relative):
                report.outside.append(clip_id)
                continue
            derived = [derived_path(sha, kind) for kind in ("poster.png", "preview.webp")]
            named.update([relative, *derived] + ([asset_path(first_frame_sha)] if first_frame_sha else []))
            if not present(relative):
                report.missing_files.append(clip_id)
                continue
            if not all(present(d) for d in derived):
                report.missing_derived.append(clip_id)
            if verify and sha256_file(lib.root / relative) != sha:
                report.corrupt.append(clip_id)
        report.orphans = sorted(r for r, link in files.items() if link or r not in named)
        if lib.fts:
            in_index = session.execute(text("SELECT count(*) FROM clip_search")).scalar_one()
            report.search_index_stale = in_index != report.clips
        if repair:
            _repair(lib, session, report)
            session.commit()
    return report


def _store_relative(relative: str) -> bool:
    """A catalog path as ingest writes them: store/..., relative, without '..'."""
    parts = Path(relative).parts
    return relative.startswith(STORE + "/") and ".." not in parts and "\x00" not in relative and "\\" not in relative


def _repair(lib: Library, session: Session, report: CheckReport) -> None:
    gone = report.missing_files + report.outside
    if gone:
        shas = set(session.execute(select(Clip.sha256).where(Clip.id.in_(gone))).scalars())
        session.execute(delete(Clip).where(Clip.id.in_(gone)))
        session.flush()
        for sha in shas - set(session.execute(select(Clip.sha256).where(Clip.sha256.in_(shas))).scalars()):
            for kind in ("poster.png", "preview.webp"):
                (lib.root / derived_path(sha, kind)).unlink(missing_ok=True)
        lib.unindex(session, gone)
        report.repaired.append(f"dropped {len(gone)} clip rows without a file: {', '.join(map(str, gone[:20]))}")
    for clip_id in report.missing_derived:
        clip = session.get(Clip, clip_id)
        rebuild_derived(lib, clip)
    if report.missing_derived:
        report.repaired.append(f"rebuilt posters/previews of {len(report.missing_derived)} clips")
    for relative in report.orphans + report.stale_tmp:
        (lib.root / relative).unlink(missing_ok=True)
    if report.orphans:
        report.repaired.append(f"removed {len(report.orphans)} orphan files")
    if report.stale_tmp:
        report.repaired.append(f"removed {len(report.stale_tmp)} stale temporary files")
    if report.search_index_stale or gone:
        lib.rebuild_search_index(session)
        report.repaired.append("rebuilt the text search index")


def rebuild_derived(lib: Library, clip: Clip) -> None:
    path = lib.file(clip.path)
    digest = digest_frames(iter_frames(path), clip.frames)
    poster, preview = lib.root / clip.poster_path, lib.root / clip.preview_path
    tmp = tmp_dir(lib) / uuid.uuid4().hex
    Image.fromarray(digest.poster).save(tmp.with_suffix(".png"))
    os.replace(tmp.with_suffix(".png"), poster)
    write_preview(tmp.with_suffix(".webp"), digest.preview, clip.fps, max(1, math.ceil(clip.frames / PREVIEW_FRAMES)))
    os.replace(tmp.with_suffix(".webp"), preview)


def soft_delete(lib: Library, clip_ids: list[int], undo: bool = False) -> list[int]:
    """Mark clips deleted (hidden everywhere; `gc` reclaims them) or, with undo, bring them back."""
    with lib.write_session() as session:
        lock(session)
        clips = session.execute(select(Clip).where(Clip.id.in_(clip_ids))).scalars().all()
        missing = sorted(set(clip_ids) - {c.id for c in clips})
        if missing:
            raise LibraryError(f"{lib.root}: no clip {', '.join(map(str, missing))}")
        for clip in clips:
            clip.deleted = None if undo else utcnow()
        session.commit()
    return sorted(c.id for c in clips)


def collect_garbage(lib: Library) -> tuple[int, int, int]:
    """Remove soft-deleted clips for good: rows, then the files no remaining row names.
    Returns (clips removed, files removed, bytes freed). Files are unlinked inside the transaction
    that drops the rows (writers wait meanwhile), so a clip added at the same moment with the same
    bytes cannot lose its file; a crash before the commit leaves deleted rows without files, which
    `check --repair` drops."""
    with lib.write_session() as session:
        lock(session)
        doomed = session.execute(
            select(Clip.id, Clip.sha256, Clip.path, Provenance.first_frame_sha256)
            .join(Provenance, isouter=True)
            .where(Clip.deleted.is_not(None))
        ).all()
        if not doomed:
            return 0, 0, 0
        ids = [d[0] for d in doomed]
        session.execute(delete(Clip).where(Clip.id.in_(ids)))
        lib.unindex(session, ids)
        session.flush()
        still_used = set(session.execute(select(Clip.sha256).where(Clip.sha256.in_({d[1] for d in doomed}))).scalars())
        used_assets = set(
            session.execute(select(Provenance.first_frame_sha256).where(Provenance.first_frame_sha256.is_not(None))).scalars()
        )
        files = []
        for _, sha, relative, asset in doomed:
            if sha not in still_used:
                files += [lib.root / relative, lib.root / derived_path(sha, "poster.png"), lib.root / derived_path(sha, "preview.webp")]
            if asset and asset not in used_assets:
                files.append(lib.root / asset_path(asset))
        freed, removed = 0, 0
        for file in dict.fromkeys(files):
            if file.is_file() and file.resolve().is_relative_to(lib.root):
                freed += file.stat().st_size
                file.unlink()
                removed += 1
        session.commit()
    return len(ids), removed, freed


def edit_tags(lib: Library, clip_ids: list[int], add: Iterable[str] = (), remove: Iterable[str] = ()) -> dict[int, list[str]]:
    add, remove = [normalize_tag(t) for t in add], [normalize_tag(t) for t in remove]
    with lib.write_session() as session:
        lock(session)
        result = {}
        for clip_id in clip_ids:
            clip = get_clip(session, clip_id)
            if clip is None:
                raise LibraryError(f"{lib.root}: no clip {clip_id}")
            have = {t.tag for t in clip.tags}
            clip.tags = [t for t in clip.tags if t.tag not in remove] + [
                Tag(tag=t) for t in dict.fromkeys(add) if t not in have and t not in remove
            ]
            session.flush()
            lib.reindex(session, clip)
            result[clip_id] = sorted(t.tag for t in clip.tags)
        session.commit()
    return result
