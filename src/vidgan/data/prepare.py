"""Turn a folder of videos (or a built-in dataset) into uint8 clip shards + index.json.

Output folder:
    shard_00000.npy ...  uint8 (N, T, S, S, C) arrays, memory-mappable (plain .npy, no pickles)
    index.json           settings, class names, shards, and one entry per clip
                         (source file, start frame, fps, label, and any caption/metadata)
    skipped.json         every input that was skipped, with the reason

Each shard holds whole source files and is written to a temporary name, then renamed; the
index is rewritten (atomically) after every shard. So a run stopped at any moment leaves only
complete shards that the index lists, and the next run of the same command continues after
the last listed file.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vidgan.data.capacity import check_fits
from vidgan.data.clips import INDEX_NAME, read_index
from vidgan.data.sources import PrepareError, caption_of, label_of, read_captions, scan_sources
from vidgan.data.video_io import VideoError, iter_frames

SHARD_BYTES = 256 * 2**20
FORMAT = "vidgan-clips/1"


@dataclass
class PrepareSettings:
    size: int = 64
    frames: int = 16
    fps: float | None = None
    stride: int | None = None  # frames between clip starts; default = frames (no overlap)
    channels: int = 3

    def as_dict(self) -> dict:
        return {"size": self.size, "frames": self.frames, "fps": self.fps, "stride": self.stride or self.frames}


@dataclass
class PrepareResult:
    out: Path
    clips: int
    files: int
    skipped: list[dict] = field(default_factory=list)
    resumed: bool = False


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class ShardWriter:
    """Buffers clips and commits them as whole shards, keeping index.json in step."""

    def __init__(self, out: Path, index: dict, shard_bytes: int | None = None):
        self.out, self.index = out, index
        shard_bytes = shard_bytes or SHARD_BYTES
        clip_bytes = index["frames"] * index["size"] ** 2 * index["channels"]
        self.shard_clips = max(1, shard_bytes // clip_bytes)
        self.buffer: list[np.ndarray] = []
        self.metas: list[dict] = []

    def add(self, clip: np.ndarray, meta: dict) -> None:
        expected = (self.index["frames"], self.index["size"], self.index["size"], self.index["channels"])
        if clip.shape != expected or clip.dtype != np.uint8:
            raise ValueError(f"clip shape {clip.shape} {clip.dtype}, expected {expected} uint8")
        self.buffer.append(clip)
        self.metas.append(meta)

    @property
    def full(self) -> bool:
        return len(self.buffer) >= self.shard_clips

    def commit(self, done_sources: Iterable[str] = ()) -> None:
        """Write buffered clips as one shard and record `done_sources` as finished."""
        shard_id = len(self.index["shards"])
        if self.buffer:
            name = f"shard_{shard_id:05d}.npy"
            tmp = self.out / f".{name}.tmp"
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(self.buffer), *self.buffer[0].shape))
            for i, clip in enumerate(self.buffer):
                array[i] = clip
            array.flush()
            del array
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.out / name)
            self.index["shards"].append({"file": name, "clips": len(self.buffer)})
            for offset, meta in enumerate(self.metas):
                self.index["clips"].append({"shard": shard_id, "offset": offset, **meta})
        self.index["done_sources"].extend(done_sources)
        _atomic_write_json(self.out / INDEX_NAME, self.index)
        self.buffer, self.metas = [], []


def cut_clips(frames: Iterator[np.ndarray], length: int, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start frame, clip) for every full window of `length` frames starting every `stride` frames."""
    window: list[np.ndarray] = []
    next_start, position = 0, 0  # position = index of window[0] in the stream
    for frame in frames:
        if position + len(window) >= next_start:
            window.append(frame)
        else:
            position += 1  # frames between clips when stride > length are dropped
        if len(window) == length:
            yield next_start, np.stack(window)
            next_start += stride
            drop = min(stride, length)
            window = window[drop:]
            position += drop


def _new_index(settings: PrepareSettings, source: str, classes: list[str]) -> dict:
    return {
        "format": FORMAT,
        "source": source,
        **settings.as_dict(),
        "channels": settings.channels,
        "classes": classes,
        "shards": [],
        "clips": [],
        "done_sources": [],
        "complete": False,
    }


def _open_output(out: Path, settings: dict, source: str, force: bool) -> dict | None:
    """The unfinished index to continue, or None to start fresh. Raises if out holds something else."""
    if force:
        _clear_output(out)
        return None
    if not (out / INDEX_NAME).exists():
        if out.exists() and any(out.iterdir()):
            raise PrepareError(f"{out}: folder is not empty and is not a prepared dataset; choose an empty or new OUT folder")
        return None
    index = read_index(out)
    mine = {k: index.get(k) for k in settings} | {"source": index.get("source")}
    if mine != settings | {"source": source}:
        raise PrepareError(f"{out}: already prepared with other settings {mine}; pass --force to rebuild it, or choose another OUT")
    listed = {s["file"] for s in index["shards"]}
    for stray in out.glob("*.npy*"):  # half-written shards from a stopped run: never trusted
        if stray.name not in listed:
            stray.unlink()
    for stray in out.glob(".*.tmp"):
        stray.unlink()
    return index


def _clear_output(out: Path) -> None:
    if not out.exists():
        return
    for p in out.iterdir():
        if p.name in (INDEX_NAME, "skipped.json") or p.name.startswith(("shard_", ".shard_", f".{INDEX_NAME}")):
            p.unlink()


def prepare_folder(
    src: str | Path,
    out: str | Path,
    settings: PrepareSettings,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    workers: int | None = None,
) -> PrepareResult:
    """workers: files decoded at once (threads; default: up to 4, one per core); the output does not depend on it."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise PrepareError(f"{src}: not a folder; pass a folder of video files (or builtin:NAME)")
    sources, skipped = scan_sources(src)
    return _prepare_files(sources, src, out, settings, f"folder:{src.resolve()}", skipped, force, progress, log, workers)


def _cut_file(path: Path, settings: PrepareSettings, stride: int) -> tuple[list[tuple[int, np.ndarray]], str | None]:
    """(start frame, clip) of every clip of one file, and what went wrong reading it (None if nothing)."""
    clips: list[tuple[int, np.ndarray]] = []
    try:
        for start, clip in cut_clips(iter_frames(path, size=settings.size, fps=settings.fps), settings.frames, stride):
            clips.append((start, clip))
    except VideoError as err:
        return clips, str(err).removeprefix(f"{path}: ")  # the skipped entry names the file already
    return clips, None


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def decode_in_order(items: list, fn: Callable, workers: int) -> Iterator:
    """fn(item) for each item, in order, computed by `workers` threads up to 2 * workers items ahead.

    Threads, not processes: PyAV decodes and rescales with the GIL released, and the clips need no
    pickling. The caller writes results in input order, so the output is the same for any worker count.
    """
    if workers <= 1:
        yield from (fn(item) for item in items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="prepare") as pool:
        ahead: deque = deque()
        todo = iter(items)
        try:
            for item in itertools.islice(todo, 2 * workers):
                ahead.append(pool.submit(fn, item))
            while ahead:
                result = ahead.popleft().result()
                for item in itertools.islice(todo, 1):
                    ahead.append(pool.submit(fn, item))
                yield result
        finally:  # stopped early (Ctrl-C, an error, the caller gave up): drop what has not started
            for future in ahead:
                future.cancel()


def _prepare_files(
    sources: list[Path],
    src: Path,
    out: Path,
    settings: PrepareSettings,
    source_id: str,
    skipped: list[dict],
    force: bool,
    progress: bool,
    log,
    workers: int | None = None,
) -> PrepareResult:
    workers = default_workers() if workers is None else workers
    index = _open_output(out, settings.as_dict(), source_id, force)
    if index is not None and index["complete"]:
        log(f"{out}: already prepared ({len(index['clips'])} clips); pass --force to rebuild")
        return PrepareResult(out, len(index["clips"]), 0, json.loads((out / "skipped.json").read_text()), resumed=True)
    resumed = index is not None
    classes = sorted({lab for p in sources if (lab := label_of(p, src)) is not None})
    if index is None:
        out.mkdir(parents=True, exist_ok=True)
        index = _new_index(settings, source_id, classes)
    else:
        skipped = index.get("skipped_so_far", []) + [s for s in skipped if s not in index.get("skipped_so_far", [])]
    done = set(index["done_sources"])
    todo = [p for p in sources if str(p.relative_to(src)) not in done]
    if resumed:
        log(f"{out}: continuing an unfinished run ({len(done)} files done, {len(todo)} to go)")
    for s in skipped:
        log(f"skipped {s['path']}: {s['reason']}")
    writer = ShardWriter(out, index)
    stride = settings.stride or settings.frames
    captions = read_captions(src)
    pending: list[str] = []
    bar = tqdm(total=len(todo), desc="prepare", unit="file", disable=not progress, dynamic_ncols=True)
    decoded = decode_in_order(todo, lambda path: _cut_file(path, settings, stride), workers)
    for path, (clips, problem) in zip(todo, decoded):
        bar.update(1)
        rel = str(path.relative_to(src))
        label = label_of(path, src)
        n_before = len(writer.buffer)
        caption = caption_of(path, rel, captions)
        extra = {} if caption is None else {"caption": caption}
        for start, clip in clips:
            writer.add(clip, {"source": rel, "start": start, "fps": settings.fps, "label": classes.index(label) if label else -1, **extra})
        kept = len(writer.buffer) - n_before
        if problem is not None:
            entry = {"path": rel, "reason": problem} | ({"kept_clips": kept} if kept else {})
        elif kept == 0:
            entry = {
                "path": rel,
                "reason": f"too short: fewer than {settings.frames} frames{f' at {settings.fps:g} fps' if settings.fps else ''}; lower --frames or remove it",
            }
        else:
            entry = None
        if entry is not None:
            skipped.append(entry)
            with tqdm.external_write_mode():
                log(f"skipped {rel}: {entry['reason']}" + (f" (kept {kept} clips read before the error)" if kept else ""))
        pending.append(rel)
        index["skipped_so_far"] = skipped
        if writer.full:
            writer.commit(pending)
            pending = []
        bar.set_postfix(clips=len(index["clips"]) + len(writer.buffer), skipped=len(skipped))
    bar.close()
    writer.commit(pending)
    return _finish(out, index, skipped, len(sources), resumed, log)


def _finish(out: Path, index: dict, skipped: list[dict], files: int, resumed: bool, log) -> PrepareResult:
    if not index["clips"]:
        _atomic_write_json(out / "skipped.json", skipped)
        raise PrepareError(
            f"{out}: no clips were made ({len(skipped)} inputs skipped, see {out / 'skipped.json'}); check the inputs or lower --frames"
        )
    index.pop("skipped_so_far", None)
    index["complete"] = True
    _atomic_write_json(out / "skipped.json", skipped)
    _atomic_write_json(out / INDEX_NAME, index)
    log(
        f"{out}: {len(index['clips'])} clips of {index['frames']}x{index['size']}x{index['size']} in {len(index['shards'])} shard(s) from {files} input(s); {len(skipped)} skipped"
        + (f" (listed in {out / 'skipped.json'})" if skipped else "")
    )
    return PrepareResult(out, len(index["clips"]), files, skipped, resumed)


def prepare_builtin(
    name: str,
    out: str | Path,
    settings: PrepareSettings,
    n: int | None = None,
    seed: int = 0,
    digits: int = 2,
    split: str = "train",
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    workers: int | None = None,
) -> PrepareResult:
    """Prepare `builtin:NAME`. Generated datasets are rebuilt whole when a run was interrupted."""
    from vidgan.data import builtin

    out = Path(out)
    if name == "sample-clips":
        files = builtin.sample_clip_files()
        src = files[0].parent
        return _prepare_files(files, src, out, settings, "builtin:sample-clips", [], force, progress, log, workers)
    options: dict = {"frames": settings.frames, "size": settings.size, "seed": seed}
    if n is not None:
        options["n"] = n
    if name == "moving-mnist":
        options["digits"] = digits
        if split != "train":  # held-out digits, for evaluation
            options["split"] = split
    data = builtin.builtin_clips(name, **options)
    settings = PrepareSettings(size=settings.size, frames=settings.frames, fps=data.fps, channels=data.channels)
    source_id = f"builtin:{name}?" + "&".join(f"{k}={v}" for k, v in sorted(options.items()))
    index = _open_output(out, settings.as_dict(), source_id, force)
    if index is not None and index["complete"]:
        log(f"{out}: already prepared ({len(index['clips'])} clips); pass --force to rebuild")
        return PrepareResult(out, len(index["clips"]), 0, [], resumed=True)
    if index is not None:
        _clear_output(out)
    out.mkdir(parents=True, exist_ok=True)
    index = _new_index(settings, source_id, data.classes)
    writer = ShardWriter(out, index)
    for clip, meta in tqdm(data.clips, total=data.count, desc=f"builtin:{name}", unit="clip", disable=not progress, dynamic_ncols=True):
        writer.add(clip, meta)
        if writer.full:
            writer.commit()
    writer.commit()
    return _finish(out, index, [], 1, False, log)


def prepare(src: str, out: str | Path, settings: PrepareSettings, check: bool = True, **kwargs) -> PrepareResult:
    """`src` is a folder, or `builtin:NAME` for a built-in dataset. check: refuse sizes that would not fit (check_fits)."""
    if check:
        channels = 1 if src == "builtin:moving-mnist" else settings.channels
        problem = check_fits(Path(out), settings.frames, settings.size, channels, kwargs.get("n"), SHARD_BYTES)
        if problem:
            raise PrepareError(problem)
    if src.startswith("builtin:"):
        return prepare_builtin(src.split(":", 1)[1], out, settings, **kwargs)
    folder_kwargs = {k: v for k, v in kwargs.items() if k in ("force", "progress", "log", "workers")}
    return prepare_folder(src, out, settings, **folder_kwargs)
