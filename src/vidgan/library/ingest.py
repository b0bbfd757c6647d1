"""Clips into the library and back out: ingest, duplicates, check/repair, gc, export, re-generation.

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

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from vidgan.data.video_io import VIDEO_SUFFIXES, VideoError, iter_frames, probe, write_video
from vidgan.library.catalog import (
    STORE,
    Clip,
    ClipQuery,
    Library,
    LibraryError,
    Provenance,
    Score,
    Tag,
    asset_path,
    clip_dict,
    clip_path,
    derived_path,
    export_name,
    find_clips,
    get_clip,
    utcnow,
)

# Near-duplicate threshold on phash_distance (0 = same picture, 1 = every bit differs). Measured on
# 64 Moving MNIST, 40 shapes and 22 real 64x64x16 clips: mp4/webm/gif re-encodes of one clip at
# vidgan's default quality are 0.000-0.017 apart, different clips 0.02-0.05 at the closest and
# 0.12-0.46 typically (the closest pairs are neighbouring windows of one still shot).
DEFAULT_THRESHOLD = 0.015
PREVIEW_SIZE = 160  # longest side of the animated preview, pixels (never enlarged)
PREVIEW_FRAMES = 48  # at most this many frames in a preview (longer clips are subsampled)
TMP_GRACE = 600.0  # seconds: younger files in store/tmp may belong to an ingest in progress
LOSSLESS_FORMAT = "apng"  # a folder of frames (generate --format png) is stored as one lossless animated PNG
CLIP_FORMATS = tuple(s.lstrip(".") for s in VIDEO_SUFFIXES) + (LOSSLESS_FORMAT,)
BROWSER_VIDEO = ("mp4", "webm")  # a <video> plays these; gif/apng show as <img>; others only via the preview


# ----------------------------------------------------------------------------- hashes and scores


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rgb(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 frames (T, H, W, C) or (H, W, C) with C 1 or 3, got {frames.dtype} {frames.shape}")
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _frames_header(height: int, width: int) -> bytes:
    return b"vidgan-frames/1 %dx%dx3 uint8\n" % (height, width)


def frames_hash(frames: np.ndarray) -> str:
    """sha256 of uint8 frames (T, H, W, C) as RGB: gray clips hash as their 3-channel video, so a
    generator's output and the lossless file made from it have the same frames hash."""
    frames = np.ascontiguousarray(_rgb(frames))
    digest = hashlib.sha256(_frames_header(*frames.shape[1:3]))
    digest.update(frames.tobytes())
    return digest.hexdigest()


def frame_dhash(frame: np.ndarray, size: int = 8, margin: float = 2.0) -> np.ndarray:
    """dHash of one RGB frame, horizontal and vertical (2 * size * size bits, as bools).

    The gray frame is box-averaged to (size+1) x size; a bit is set where a cell is brighter
    than its neighbour by more than `margin` levels. The margin keeps codec noise in flat areas
    (a black background decoding as 0, 1, 2) from flipping bits, which plain dHash (margin 0)
    does: re-encodes then look 10x further apart."""
    gray = Image.fromarray(_rgb(frame)).convert("L")
    wide = np.asarray(gray.resize((size + 1, size), Image.BOX), dtype=np.float32)
    tall = np.asarray(gray.resize((size, size + 1), Image.BOX), dtype=np.float32)
    return np.concatenate([(wide[:, 1:] - wide[:, :-1] > margin).ravel(), (tall[1:] - tall[:-1] > margin).ravel()])


def perceptual_hash(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Mean of the per-frame dHash bits over the clip, quantised to uint8 (128 values, 0..255).

    The same clip re-encoded (mp4 -> webm/gif, same size) keeps nearly every bit in nearly every
    frame; different clips differ in where their edges are. Frame order does not count."""
    total, count = None, 0
    for frame in frames:
        bits = frame_dhash(frame).astype(np.float64)
        total = bits if total is None else total + bits
        count += 1
    if count == 0:
        raise ValueError("a clip needs at least one frame")
    return np.round(total / count * 255).astype(np.uint8)


def phash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference of two perceptual hashes (or of one against rows of many), in [0, 1]."""
    return np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean(axis=-1) / 255.0


def motion_score(previous: np.ndarray, frame: np.ndarray) -> float:
    return float(np.abs(frame.astype(np.int16) - previous.astype(np.int16)).mean() / 255.0)


MOTION_PROTOCOL = "mean |frame[t+1] - frame[t]| / 255 over the decoded uint8 RGB frames of this clip"


@dataclass
class Digest:
    """Everything ingest learns from one pass over a clip's decoded frames."""

    frames_sha256: str
    phash: np.ndarray
    frames: int
    width: int
    height: int
    motion: float
    poster: np.ndarray
    preview: list[np.ndarray]


def digest_frames(frames: Iterator[np.ndarray], expected: int) -> Digest:
    """One streaming pass (a long video never sits in memory): frames hash, perceptual hash,
    motion, the middle frame as poster and up to PREVIEW_FRAMES small frames for the preview."""
    digest, bits, count, motion, previous, poster, preview = None, None, 0, 0.0, None, None, []
    stride = max(1, math.ceil(expected / PREVIEW_FRAMES))
    for frame in frames:
        frame = _rgb(frame)
        if digest is None:
            digest = hashlib.sha256(_frames_header(*frame.shape[:2]))
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(f"frame {count} is {frame.shape}, frame 0 was {shape}")
        digest.update(np.ascontiguousarray(frame).tobytes())
        b = frame_dhash(frame).astype(np.float64)
        bits = b if bits is None else bits + b
        if previous is not None:
            motion += motion_score(previous, frame)
        if count <= expected // 2 or poster is None:
            poster = frame
        if count % stride == 0 and len(preview) < PREVIEW_FRAMES:
            preview.append(_shrink(frame, PREVIEW_SIZE))
        previous, count = frame, count + 1
    if count == 0:
        raise ValueError("no frames")
    return Digest(
        digest.hexdigest(),
        np.round(bits / count * 255).astype(np.uint8),
        count,
        shape[1],
        shape[0],
        motion / max(1, count - 1),
        poster,
        preview,
    )


def _shrink(frame: np.ndarray, longest: int) -> np.ndarray:
    height, width = frame.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1:
        return frame
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BOX))


# ----------------------------------------------------------------------------- files


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_apng(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Lossless animated PNG through FFmpeg (every frame kept; PIL would merge equal neighbours)."""
    frames = _rgb(frames)
    with av.open(str(path), "w", format="apng") as container:
        stream = container.add_stream("apng", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb24"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def _write_preview(path: Path, frames: list[np.ndarray], fps: float, stride: int) -> None:
    images = [Image.fromarray(f) for f in frames]
    duration = max(20, round(1000 * stride / fps))
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=duration, loop=0, quality=75, method=4)


def _tmp_dir(lib: Library) -> Path:
    tmp = lib.store / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


# ----------------------------------------------------------------------------- ingest


@dataclass
class IngestResult:
    source: str
    clip_id: int | None  # None when skipped
    status: str  # "added", "duplicate" (added, flagged as a near-duplicate) or "skipped" (a near-duplicate)
    duplicate_of: int | None = None
    distance: float | None = None

    def line(self) -> str:
        if self.status == "added":
            return f"added {self.source} as clip {self.clip_id}"
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

    # -- steps (tests wrap _insert_rows and _place_files to simulate crashes)

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
        tmp = _tmp_dir(self.lib) / f"{uuid.uuid4().hex}.{os.getpid()}"
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
            _write_preview(preview, digest.preview, fps, max(1, math.ceil(info.frames / PREVIEW_FRAMES)))
            if self.durable:
                for file, _ in moves:
                    _fsync(file)
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
                clip = _insert_rows(self.lib, session, prepared)
                _place_files(self.lib, prepared.moves, placed, self.durable)
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


def _insert_rows(lib: Library, session: Session, prepared: Prepared) -> Clip:
    clip = Clip(**prepared.values)
    clip.provenance = Provenance(**prepared.provenance)
    clip.scores = [Score(metric=m, value=float(v), protocol=p or "") for m, (v, p) in prepared.scores.items()]
    clip.tags = [Tag(tag=t) for t in dict.fromkeys(prepared.tags)]
    session.add(clip)
    session.flush()
    lib.reindex(session, clip)
    return clip


def _place_files(lib: Library, moves: list[tuple[Path, str]], created: list[Path], durable: bool = True) -> None:
    """Move prepared files to their store paths; appends to `created` the ones that did not exist before."""
    for tmp, relative in moves:
        final = lib.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        existed = final.exists()
        os.replace(tmp, final)
        if not existed:
            created.append(final)
    if durable and moves:
        for directory in {(lib.root / r).parent for _, r in moves}:
            _fsync(directory)


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


# ----------------------------------------------------------------------------- generated clips


def weights_file(checkpoint: str | Path, ema: bool) -> Path:
    """The generator weights a VideoPipeline loaded from `checkpoint` (its .source)."""
    folder = Path(checkpoint)
    if not (folder / "state.json").is_file():  # a save_pretrained folder holds one generator
        return folder / "generator.safetensors"
    return folder / ("generator_ema.safetensors" if ema else "generator.safetensors")


def run_scores(run_dir: Path | None, step: int | None) -> dict[str, tuple[float, str]]:
    """Scores of the checkpoint a clip came from, from RUN/metrics.jsonl (the lines vidgan.metrics
    appends, StyleGAN2-ADA style: {"step": S, "results": {"fvd2048_16f": 312.5}, "protocol": {...}}), when present."""
    if run_dir is None or step is None or not (Path(run_dir) / "metrics.jsonl").is_file():
        return {}
    scores = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("step") != step or not isinstance(entry.get("results"), dict):
            continue
        protocol = entry.get("protocol") or ""
        if not isinstance(protocol, str):  # vidgan.metrics writes the protocol as a dict
            protocol = json.dumps(protocol, sort_keys=True, default=str)
        for metric, value in entry["results"].items():
            if isinstance(value, (int, float)) and math.isfinite(value):  # later lines (re-evaluations) win
                scores[metric] = (
                    float(value),
                    f"of checkpoint step {step}'s samples, not of this clip alone" + (f"; {protocol}" if protocol else ""),
                )
    return scores


def class_names(pipe) -> list[str]:
    """The model's class names (kept in its config by newer runs, else the training data's index.json)."""
    names = list(getattr(pipe.config.model, "classes", None) or [])
    if names:
        return names
    index = Path(pipe.config.data or "") / "index.json"
    try:
        return list(json.loads(index.read_text()).get("classes") or []) if index.is_file() else []
    except (ValueError, OSError):
        return []


def generation_records(
    pipe,
    clips: np.ndarray,
    call: dict,
    ema: bool,
    run: str | Path | None,
    fmt: str,
    first_frame: np.ndarray | None = None,
    first_frame_path: str | None = None,
    device: str = "cpu",
) -> list[dict]:
    """The provenance of each clip of one generate call: clips = pipe(**call) (or pipe.interpolate when
    call["interpolate"] = [a, b]). call: n, seed, batch_size, label, text, frames, truncation, hold,
    interpolate: exactly what replays the call; clip i of it is clips[i]."""
    import inspect

    import torch

    import vidgan

    call = dict(call)
    call.setdefault("batch_size", inspect.signature(type(pipe).__call__).parameters["batch_size"].default)
    weights = weights_file(pipe.source, ema)
    m = pipe.config.model
    names = class_names(pipe)
    shared = {
        "run": str(Path(run).resolve()) if run is not None else None,
        "checkpoint": str(Path(pipe.source).resolve()),
        "step": pipe.step,
        "checkpoint_sha256": sha256_file(weights) if weights.is_file() else None,
        "ema": ema,
        "model": m.name,
        "seed": call.get("seed"),
        "n": call["n"],
        "batch_size": call["batch_size"],
        "text": call.get("text"),
        "first_frame": first_frame_path,
        "first_frame_sha256": frames_hash(first_frame[None]) if first_frame is not None else None,
        "truncation": call.get("truncation"),
        "settings": {
            "call": call,
            "format": fmt,
            "writer": "vidgan.data.video_io.write_video(quality='high')",
            "fps": pipe.fps,
            "device": str(device),
            "torch": torch.__version__,
            "av": av.__version__,
            "vidgan": getattr(vidgan, "__version__", None),
            "model_config": m.model_dump(),
        },
    }
    records = []
    for i, clip in enumerate(clips):
        label = None
        if m.condition == "class":
            label = int(call["label"]) if call.get("label") is not None else i % m.num_classes
        records.append(
            {
                **shared,
                "index": i,
                "label": label,
                "output_sha256": frames_hash(clip),
                "label_name": names[label] if label is not None and label < len(names) else None,
            }
        )
    return records


def annotate_manifest(out: Path, records: list[dict]) -> None:
    """Add each clip's full provenance to the generated.json that save_clips wrote in `out`, so that
    `vidgan library add LIB OUT/clip_*.mp4` later files them as regenerable as --to-library does."""
    manifest_path = Path(out) / "generated.json"
    manifest = json.loads(manifest_path.read_text())
    for entry, record in zip(manifest["clips"], records):
        entry["provenance"] = record
    tmp = manifest_path.with_name(f".generated.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, manifest_path)


def ingest_generated(
    lib_path: str | Path,
    records: list[dict],
    paths: list[Path],
    fps: float,
    first_frame: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    tags: Iterable[str] = (),
) -> list[IngestResult]:
    """File the clips of one generate call (paths[i] written from the clip of records[i]) into a library,
    creating it if needed. Near-duplicates are flagged, not skipped: a batch stays whole."""
    lib_path = Path(lib_path)
    lib = Library.open(lib_path) if (lib_path / "library.db").exists() or (lib_path / "library.json").exists() else Library.init(lib_path)
    try:
        if first_frame is not None:
            _store_asset(lib, first_frame)
        ingester = Ingester(lib, threshold=threshold)
        results = []
        for record, path in zip(records, paths):
            scores = run_scores(record.get("run"), record.get("step"))
            results.append(ingester.add_file(path, provenance=record, tags=tags, scores=scores, caption=record.get("text"), fps=fps))
        return results
    finally:
        lib.close()


def _store_asset(lib: Library, frame: np.ndarray) -> Path:
    """Keep an input image (uint8 (H, W, C)) losslessly under store/assets/<frames_hash>.png."""
    final = lib.root / asset_path(frames_hash(frame[None]))
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_dir(lib) / f"{uuid.uuid4().hex}.png"
        Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(tmp)
        os.replace(tmp, final)
    return final


def load_asset(lib: Library, sha: str, channels: int) -> np.ndarray:
    path = lib.root / asset_path(sha)
    if not path.is_file():
        raise LibraryError(f"{path}: the first frame this clip was made from is missing from the library")
    with Image.open(path) as im:
        frame = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    return frame.reshape(*frame.shape[:2], channels)


# ----------------------------------------------------------------------------- re-generation


@dataclass
class Regeneration:
    clip_id: int
    frames: np.ndarray  # the regenerated clip, uint8 (T, H, W, C) as the generator returned it
    output_match: bool | None  # generator output's frames hash == the recorded one (None: none recorded)
    decoded_match: bool  # re-encoded the same way and decoded: frames hash == the stored file's
    file_match: bool  # ... and the file's bytes are identical too
    file: Path | None = None

    @property
    def identical(self) -> bool:
        return self.output_match is not False and self.decoded_match


def regenerate(
    lib: Library, clip_id: int, run: str | Path | None = None, device: str | None = None, out: str | Path | None = None
) -> Regeneration:
    """Make a clip again from its provenance and compare it with the stored one.

    The generator's uint8 output is compared by its frames hash (bit for bit). The stored file may
    be lossy (mp4, webm): the regenerated clip is encoded the same way (same writer, settings and
    FFmpeg build) and the decoded frames are compared; the bytes usually match too."""
    from vidgan.pipeline import VideoPipeline
    from vidgan.training import checkpoint as ckpt

    with lib.session() as s:
        clip = get_clip(s, clip_id)
        if clip is None:
            raise LibraryError(f"{lib.root}: no clip {clip_id}")
        prov = clip.provenance
        settings = prov.settings_dict() if prov else {}
        call = settings.get("call")
        if prov is None or call is None or prov.checkpoint is None:
            raise LibraryError(f"clip {clip_id}: no generation provenance (it was added from a file); nothing to regenerate from")
        fmt, expected_sha, expected_frames = clip.format, clip.sha256, clip.frames_sha256
    # the weights folder recorded at generation; with `run`, that run's checkpoint of the same step
    # (or `run` itself when it is one checkpoint or a saved pipeline folder)
    weights_dir = Path(prov.checkpoint)
    if run is not None:
        run = Path(run)
        weights_dir = ckpt.checkpoint_dir(run, prov.step) if (run / "checkpoints").is_dir() and prov.step is not None else run
    elif not weights_dir.exists() and prov.run and prov.step is not None:
        weights_dir = ckpt.checkpoint_dir(prov.run, prov.step)
    weights = weights_file(weights_dir, bool(prov.ema))
    if not weights.is_file():
        raise LibraryError(
            f"clip {clip_id}: checkpoint {weights} is not there (step {prov.step} of {prov.run}); "
            f"pass --run with the run folder that has it (runs keep only their newest checkpoints)"
        )
    if prov.checkpoint_sha256 and sha256_file(weights) != prov.checkpoint_sha256:
        raise LibraryError(
            f"clip {clip_id}: {weights} is not the checkpoint the clip was made with (sha256 differs); find the original run"
        )
    pipe = VideoPipeline.from_pretrained(weights_dir, ema=bool(prov.ema), device=device or settings.get("device", "cpu"))
    m = pipe.config.model
    first_frame = load_asset(lib, prov.first_frame_sha256, m.channels) if prov.first_frame_sha256 else None
    condition = {"label": call.get("label"), "first_frame": first_frame, "text": call.get("text")}
    if call.get("interpolate"):
        a, b = call["interpolate"]
        with pipe.sampling(call.get("temperature"), call.get("top_k")):
            clips = pipe.interpolate(a, b, steps=call["n"], truncation=call.get("truncation"), **condition)
    else:
        clips = pipe(
            n=call["n"],
            seed=call["seed"],
            batch_size=call.get("batch_size", 16),
            frames=call.get("frames"),
            truncation=call.get("truncation"),
            hold=call.get("hold"),
            temperature=call.get("temperature"),
            top_k=call.get("top_k"),
            **condition,
        )
    frames = clips[prov.index]
    output_match = None if not prov.output_sha256 else frames_hash(frames) == prov.output_sha256
    with tempfile.TemporaryDirectory(dir=_tmp_dir(lib)) as tmp:
        encoded = Path(tmp) / f"clip.{fmt}"
        if fmt == LOSSLESS_FORMAT:
            write_apng(encoded, frames, clip.fps)
        else:
            write_video(encoded, frames, fps=clip.fps)
        decoded = digest_frames(iter_frames(encoded), clip.frames).frames_sha256
        file_match = sha256_file(encoded) == expected_sha
        written = None
        if out is not None:
            written = Path(out)
            written.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(encoded, written)
    return Regeneration(clip_id, frames, output_match, decoded == expected_frames, file_match, written)


# ----------------------------------------------------------------------------- check and repair


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
    tmp = _tmp_dir(lib) / uuid.uuid4().hex
    Image.fromarray(digest.poster).save(tmp.with_suffix(".png"))
    os.replace(tmp.with_suffix(".png"), poster)
    _write_preview(tmp.with_suffix(".webp"), digest.preview, clip.fps, max(1, math.ceil(clip.frames / PREVIEW_FRAMES)))
    os.replace(tmp.with_suffix(".webp"), preview)


# ----------------------------------------------------------------------------- rm, gc, tags


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


def set_scores(lib: Library, clip_id: int, scores: dict[str, float], protocol: str = "") -> None:
    with lib.write_session() as session:
        lock(session)
        clip = get_clip(session, clip_id)
        if clip is None:
            raise LibraryError(f"{lib.root}: no clip {clip_id}")
        have = {s.metric: s for s in clip.scores}
        for metric, value in scores.items():
            if metric in have:
                have[metric].value, have[metric].protocol = float(value), protocol
            else:
                clip.scores.append(Score(metric=metric, value=float(value), protocol=protocol))
        session.commit()


# ----------------------------------------------------------------------------- export


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
