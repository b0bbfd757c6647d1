"""Clips into the library: ingest with near-duplicate detection.

Ingesting one clip:
  1. outside any transaction: copy the file to store/tmp/ (a frame folder becomes a lossless
     animated PNG), hash its bytes (sha256: its name in the store), decode it once to hash the
     uint8 frames (frames_hash), compute the perceptual hash, a poster (png) and a preview (webp);
  2. compare the perceptual hash with every clip in the library (near-duplicates: flag or skip);
  3. one transaction: insert the rows, move the files into place, commit. An exception anywhere
     rolls the rows back and removes the files this clip put in place. A process killed between
     the move and the commit leaves files that no row names: orphans, which nothing trusts and
     `check --repair` removes. A row never exists without its files, because the row commits last.

Writers serialise on the catalog: SQLite's write lock (BEGIN IMMEDIATE), a PostgreSQL advisory
lock. So `check --repair` and `gc` never see another process's half-placed clip.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from vidgan.data.video_io import VideoError, iter_frames, probe
from vidgan.library.catalog import Library
from vidgan.library.hashing import MOTION_PROTOCOL, PREVIEW_FRAMES, digest_frames, frames_hash, phash_distance, sha256_file
from vidgan.library.store import CLIP_FORMATS, LOSSLESS_FORMAT, fsync_file, place_files, tmp_dir, write_apng, write_preview
from vidgan.library.tables import Clip, Provenance, Score, Tag, clip_path, derived_path

# Near-duplicate threshold on phash_distance (0 = same picture, 1 = every bit differs). Measured on
# 64 Moving MNIST, 40 shapes and 22 real 64x64x16 clips: mp4/webm/gif re-encodes of one clip at
# vidgan's default quality are 0.000-0.017 apart, different clips 0.02-0.05 at the closest and
# 0.12-0.46 typically (the closest pairs are neighbouring windows of one still shot).
DEFAULT_THRESHOLD = 0.015


@dataclass
class IngestResult:
    source: str
    clip_id: int | None  # None when skipped
    # "added", "duplicate" (added, flagged as a near-duplicate), "skipped" (a near-duplicate, not added)
    # or "exists" (a byte-identical file is already clip `clip_id`: nothing added)
    status: str
    duplicate_of: int | None = None
    distance: float | None = None

    def line(self) -> str:
        if self.status == "added":
            return f"added {self.source} as clip {self.clip_id}"
        if self.status == "exists":
            return f"{self.source}: already in the library as clip {self.clip_id} (byte-identical); nothing added"
        if self.status == "duplicate":
            return f"added {self.source} as clip {self.clip_id} (near-duplicate of clip {self.duplicate_of}, distance {self.distance:.4f})"
        return f"skipped {self.source}: near-duplicate of clip {self.duplicate_of} (distance {self.distance:.4f})"


@dataclass
class Prepared:
    """A clip ready for its transaction: files in store/tmp and the values of its rows."""

    moves: list[tuple[Path, str]]  # (temporary file, final path relative to the library root)
    values: dict
    provenance: dict
    scores: dict[str, tuple[float, str]]
    tags: list[str]
    phash: np.ndarray


def normalize_tag(tag: str) -> str:
    tag = " ".join(str(tag).split())
    if not tag or len(tag) > 64 or "," in tag or any(ord(c) < 32 for c in tag):
        raise ValueError(f"tag {tag!r}: a tag is 1-64 characters without commas or control characters")
    return tag


PROVENANCE_FIELDS = {c.key for c in Provenance.__table__.columns} - {"clip_id", "settings"}


class Ingester:
    """Adds clips to one library; keeps every live clip's perceptual hash in memory for duplicate checks.

    Clips that other processes add while this one runs are not compared with (the hashes are
    loaded once, when the Ingester is made)."""

    def __init__(self, lib: Library, threshold: float = DEFAULT_THRESHOLD, skip_duplicates: bool = False, durable: bool = True):
        if not 0 <= threshold < 1:
            raise ValueError(f"duplicate threshold must be in [0, 1), got {threshold}")
        self.lib, self.threshold, self.skip_duplicates, self.durable = lib, threshold, skip_duplicates, durable
        with lib.session() as s:
            rows = s.execute(select(Clip.id, Clip.phash).where(Clip.deleted.is_(None)).order_by(Clip.id)).all()
        self.known_ids = [r[0] for r in rows]
        self.known = np.stack([np.frombuffer(bytes.fromhex(r[1]), dtype=np.uint8) for r in rows]) if rows else np.zeros((0, 128), np.uint8)

    # -- public

    def add_file(
        self,
        path: str | Path,
        provenance: dict | None = None,
        tags: Iterable[str] = (),
        scores: dict | None = None,
        caption: str | None = None,
        fps: float | None = None,
        output_frames: np.ndarray | None = None,
    ) -> IngestResult:
        """Add one clip file (any video vidgan reads) or a folder of frames.

        provenance: Provenance fields (+ "settings": dict); scores: {metric: value or (value, protocol)};
        fps: the frame rate of a frame folder (folders carry none); output_frames: the generator's uint8
        output this file was written from (its frames hash goes in provenance, for re-generation)."""
        path = Path(path)
        prepared = self.prepare(path, provenance or {}, list(tags), scores or {}, caption, fps, output_frames)
        try:
            with self.lib.session() as s:
                same = s.scalar(select(Clip.id).where(Clip.sha256 == prepared.values["sha256"], Clip.deleted.is_(None)).order_by(Clip.id))
            if same is not None:
                return IngestResult(str(path), same, "exists")
            duplicate_of, distance = self.nearest(prepared.phash)
            if duplicate_of is not None and self.skip_duplicates:
                return IngestResult(str(path), None, "skipped", duplicate_of, distance)
            prepared.values.update(duplicate_of=duplicate_of, duplicate_distance=distance)
            clip_id = self.commit(prepared)
        finally:
            for tmp, _ in prepared.moves:
                tmp.unlink(missing_ok=True)
        self.known_ids.append(clip_id)
        self.known = np.concatenate([self.known, prepared.phash[None]])
        return IngestResult(str(path), clip_id, "added" if duplicate_of is None else "duplicate", duplicate_of, distance)

    def nearest(self, phash: np.ndarray) -> tuple[int | None, float | None]:
        if not len(self.known):
            return None, None
        distances = phash_distance(self.known, phash)
        best = int(np.argmin(distances))
        if distances[best] <= self.threshold:
            return self.known_ids[best], round(float(distances[best]), 6)
        return None, None

    # -- steps (tests wrap insert_rows and place_files to simulate crashes)

    def prepare(
        self,
        path: Path,
        provenance: dict,
        tags: list[str],
        scores: dict,
        caption: str | None,
        fps: float | None,
        output_frames: np.ndarray | None,
    ) -> Prepared:
        tags = [normalize_tag(t) for t in tags]
        unknown = set(provenance) - PROVENANCE_FIELDS - {"settings"}
        if unknown:
            raise ValueError(f"unknown provenance fields: {', '.join(sorted(unknown))}")
        if not path.exists():
            raise VideoError(f"{path}: no such file or folder; check the path")
        tmp = tmp_dir(self.lib) / f"{uuid.uuid4().hex}.{os.getpid()}"
        moves: list[tuple[Path, str]] = []
        try:
            if path.is_dir():  # a folder of frames: one lossless animated PNG
                info = probe(path)
                fps = fps or info.fps
                fmt = LOSSLESS_FORMAT
                write_apng(tmp, np.stack(list(iter_frames(path))), fps)
            else:
                fmt = path.suffix.lower().lstrip(".")
                if fmt not in CLIP_FORMATS:
                    raise VideoError(f"{path}: not a clip format the library keeps ({', '.join(CLIP_FORMATS)}); convert it with ffmpeg")
                shutil.copyfile(path, tmp)
            info = probe(tmp)
            fps = fps or info.fps
            digest = digest_frames(iter_frames(tmp), info.frames)
            sha = sha256_file(tmp)
            moves.append((tmp, clip_path(sha, fmt)))
            poster, preview = tmp.with_name(tmp.name + ".poster.png"), tmp.with_name(tmp.name + ".preview.webp")
            moves += [(poster, derived_path(sha, "poster.png")), (preview, derived_path(sha, "preview.webp"))]
            Image.fromarray(digest.poster).save(poster)
            write_preview(preview, digest.preview, fps, max(1, math.ceil(info.frames / PREVIEW_FRAMES)))
            if self.durable:
                for file, _ in moves:
                    fsync_file(file)
        except BaseException as err:
            for file in [tmp, *(m[0] for m in moves)]:
                file.unlink(missing_ok=True)
            if isinstance(err, (VideoError, ValueError)):  # name the user's file, not our copy of it
                message = str(err).replace(str(tmp), str(path))
                raise type(err)(message if str(path) in message else f"{path}: {message}") from err
            raise
        provenance = dict(provenance)
        if output_frames is not None:
            provenance["output_sha256"] = frames_hash(output_frames)
        settings = provenance.pop("settings", {}) or {}
        values = dict(
            sha256=sha,
            frames_sha256=digest.frames_sha256,
            path=clip_path(sha, fmt),
            format=fmt,
            frames=digest.frames,
            fps=fps,
            width=digest.width,
            height=digest.height,
            duration=digest.frames / fps,
            bytes=tmp.stat().st_size,
            source_name=path.name,
            caption=caption,
            phash=digest.phash.tobytes().hex(),
        )
        all_scores = {"motion": (round(digest.motion, 6), MOTION_PROTOCOL)}
        for metric, value in scores.items():
            all_scores[str(metric)] = value if isinstance(value, tuple) else (float(value), "")
        return Prepared(
            moves, values, {**provenance, "settings": json.dumps(settings, sort_keys=True, default=str)}, all_scores, tags, digest.phash
        )

    def commit(self, prepared: Prepared) -> int:
        placed: list[Path] = []  # filled as files land, so a failure half-way knows what to take back
        with self.lib.write_session() as session:
            try:
                lock(session)
                clip = insert_rows(self.lib, session, prepared)
                place_files(self.lib, prepared.moves, placed, self.durable)
                session.commit()
            except BaseException:
                session.rollback()
                for file in placed:  # only the files this clip created; an identical file kept by another clip stays
                    file.unlink(missing_ok=True)
                raise
        return clip.id


def lock(session: Session) -> None:
    """Serialise writers on a server catalog (SQLite write transactions already hold its write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7243051)"))


def insert_rows(lib: Library, session: Session, prepared: Prepared) -> Clip:
    clip = Clip(**prepared.values)
    clip.provenance = Provenance(**prepared.provenance)
    clip.scores = [Score(metric=m, value=float(v), protocol=p or "") for m, (v, p) in prepared.scores.items()]
    clip.tags = [Tag(tag=t) for t in dict.fromkeys(prepared.tags)]
    session.add(clip)
    session.flush()
    lib.reindex(session, clip)
    return clip


def provenance_from_manifest(path: Path) -> dict | None:
    """Provenance of a file written by `vidgan generate`, from the generated.json beside it (if any).

    Manifests written with the library's fields (every `vidgan generate` now) carry the whole record,
    re-generation included; older ones give what they have (model, step, seed, index)."""
    manifest_path = path.parent / "generated.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        entry = next(c for c in manifest.get("clips", []) if c.get("file") == path.name)
    except (ValueError, StopIteration, AttributeError, TypeError):
        return None
    if isinstance(entry.get("provenance"), dict):
        return {k: v for k, v in entry["provenance"].items() if k in PROVENANCE_FIELDS or k == "settings"}
    condition = manifest.get("condition") or {}
    prov = {
        "checkpoint": manifest.get("source"),
        "step": manifest.get("step"),
        "model": manifest.get("model"),
        "seed": manifest.get("seed"),
        "n": len(manifest.get("clips", [])),
        "index": entry.get("index"),
        "text": condition.get("text"),
        "first_frame": condition.get("first_frame"),
        "truncation": condition.get("truncation"),
        "settings": {"manifest": {k: v for k, v in manifest.items() if k != "clips"}},
    }
    return {k: v for k, v in prov.items() if v is not None}


def add_files(
    lib: Library,
    paths: Iterable[str | Path],
    ingester: Ingester | None = None,
    on_error: Callable[[Exception], None] | None = None,
    **kwargs,
) -> list[IngestResult]:
    """Add clip files; a file beside a generated.json (from `vidgan generate`) brings its provenance along."""
    ingester = ingester or Ingester(lib)
    given = kwargs.pop("provenance", None)
    results = []
    for path in paths:
        path = Path(path)
        try:
            results.append(ingester.add_file(path, provenance=given or provenance_from_manifest(path), **kwargs))
        except (VideoError, ValueError) as err:
            if on_error is None:
                raise
            on_error(err)
    return results
