"""Where clips to score come from: a run (or checkpoint, or saved pipeline), a prepared dataset, a
folder of videos, or arrays; each serves uint8 clips for a seeded plan of (item, offset) pairs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidgan.conditioning import caption_embeddings, default_labels, make_condition
from vidgan.data.clips import INDEX_NAME, ClipDataset
from vidgan.data.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, probe, read_video, to_uint8
from vidgan.run import is_checkpoint, is_run


def _resize(clips: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, T, H, W, C) square clips to (B, T, size, size, C): torch area to shrink, bilinear to enlarge."""
    b, t, h, w, c = clips.shape
    if (h, w) == (size, size):
        return clips
    x = torch.from_numpy(np.ascontiguousarray(clips)).reshape(b * t, h, w, c).permute(0, 3, 1, 2).float()
    mode = "area" if size < min(h, w) else "bilinear"
    x = F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(b, t, size, size, c).numpy()


class Source:
    """Where clips come from: served as uint8 (B, frames, S, S, C) by reference rows (item, frame offset)."""

    kind = ""
    count: int | None = None  # items available (None: as many as asked, a generator)
    length: int | None = None  # frames per item (folders: the longest video's)
    resolution: int = 0
    path: str = ""

    def describe(self) -> dict:
        return {"kind": self.kind, "path": self.path}

    def fingerprint(self) -> str | None:
        return None  # only fixed data is cached

    def plan(self, n: int, frames: int, seed: int) -> np.ndarray:
        raise NotImplementedError

    def load(self, refs: np.ndarray, frames: int, size: int) -> np.ndarray:
        raise NotImplementedError

    def _offsets(self, lengths: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, np.asarray(lengths) - frames + 1)


class DatasetSource(Source):
    """A folder made by `vidgan prepare`."""

    kind = "dataset"

    def __init__(self, path):
        self.data = ClipDataset(path)
        self.path = str(path)
        self.count, self.length, self.resolution = len(self.data), self.data.frames, self.data.size

    def fingerprint(self) -> str:
        return "dataset:" + hashlib.sha256((Path(self.path) / INDEX_NAME).read_bytes()).hexdigest()

    def plan(self, n, frames, seed):
        rng = np.random.default_rng(seed)
        items = rng.permutation(self.count)[:n]
        return np.stack([items, self._offsets(np.full(len(items), self.length), frames, rng)], 1)

    def load(self, refs, frames, size):
        clips, _ = self.data.get_batch(refs[:, 0])
        clips = clips.numpy()
        clips = np.stack([c[o : o + frames] for c, o in zip(clips, refs[:, 1])])
        return _resize(clips, size)


class ArraySource(Source):
    """Clips already in memory, uint8 (N, T, H, W, C) square frames (never cached)."""

    kind = "arrays"

    def __init__(self, clips: np.ndarray, name: str = "arrays"):
        clips = np.asarray(clips)
        if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[2] != clips.shape[3]:
            raise ValueError(f"expected uint8 clips (N, T, S, S, C), got {clips.dtype} {clips.shape}")
        self.clips, self.path = clips, name
        self.count, self.length, self.resolution = len(clips), clips.shape[1], clips.shape[2]

    def plan(self, n, frames, seed):
        rng = np.random.default_rng(seed)
        items = rng.permutation(self.count)[:n]
        return np.stack([items, self._offsets(np.full(len(items), self.length), frames, rng)], 1)

    def load(self, refs, frames, size):
        return _resize(np.stack([self.clips[i, o : o + frames] for i, o in refs[:, :2]]), size)


class FolderSource(Source):
    """A folder of video files (and frame folders), e.g. the output of `vidgan generate`."""

    kind = "folder"

    def __init__(self, path, size: int | None = None):
        from vidgan.data.sources import scan_sources

        root = Path(path)
        self.path = str(root)
        self.files = self._listed(root) or [p for p in scan_sources(root)[0] if not p.name.startswith("grid.")]
        if not self.files:
            raise ValueError(f"{root}: no videos found ({', '.join(VIDEO_SUFFIXES)} or folders of {'/'.join(IMAGE_SUFFIXES)} frames)")
        self._lengths: np.ndarray | None = None
        if size is None:
            info = probe(self.files[0])
            size = min(info.width, info.height)
        self.resolution = size
        self.dropped = 0

    @staticmethod
    def _listed(root: Path) -> list[Path]:
        """The clips a `vidgan generate` folder lists in generated.json (not its grid previews), if any."""
        try:
            entries = json.loads((root / "generated.json").read_text())["clips"]
            files = [root / c["file"] for c in entries]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        files = [p if p.exists() else p.with_suffix("") for p in files]  # png clips are frame folders
        return files if all(p.exists() for p in files) else []

    def fingerprint(self) -> str:
        rows = []
        for p in self.files:
            entries = sorted(p.iterdir()) if p.is_dir() else [p]
            rows.append([str(p.relative_to(self.path)), [(e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries]])
        return "folder:" + hashlib.sha256(json.dumps(rows).encode()).hexdigest()

    def lengths(self) -> np.ndarray:
        if self._lengths is None:
            self._lengths = np.array([probe(p).frames for p in self.files])
        return self._lengths

    @property
    def length(self) -> int:
        """The longest video's frame count: bare metric names use up to that many; shorter videos are dropped."""
        return int(self.lengths().max())

    def plan(self, n, frames, seed):
        lengths = self.lengths()
        eligible = np.flatnonzero(lengths >= frames)
        self.dropped = len(lengths) - len(eligible)
        if len(eligible) == 0:
            raise ValueError(f"{self.path}: no video has {frames} frames (longest: {lengths.max()})")
        rng = np.random.default_rng(seed)
        items = eligible[rng.permutation(len(eligible))[:n]]
        return np.stack([items, self._offsets(lengths[items], frames, rng)], 1)

    def load(self, refs, frames, size):
        return np.stack([read_video(self.files[i], start=int(o), num_frames=frames, size=size) for i, o in refs])

    def describe(self):
        return {**super().describe(), "videos": len(self.files), "dropped_too_short": int(self.dropped)}


class GeneratorSource(Source):
    """Clips from a generator: sample i is made from noise row i of noise(n, seed)."""

    kind = "generator"

    def __init__(
        self,
        generate: Callable,
        noise: Callable[[int, int], torch.Tensor],
        resolution: int,
        length: int,
        conditions: Callable[[np.ndarray], object] | None = None,
        info: dict | None = None,
    ):
        self.generate, self.noise, self.conditions = generate, noise, conditions
        self.resolution, self.length = resolution, length
        self.info = info or {}
        self.path = str(self.info.get("path", ""))
        self._noise: dict[int, torch.Tensor] = {}  # n -> noise(n, seed): rows of randn(n) differ with n
        self._seed: int | None = None

    @classmethod
    def from_pipeline(cls, pipe, real: Source | None = None, text_table: torch.Tensor | None = None) -> GeneratorSource:
        m = pipe.config.model

        @torch.no_grad()
        def generate(z, cond):
            dev = pipe.device
            return to_uint8(pipe.generator(z.to(dev), None if cond is None else cond.to(dev)).float().cpu())

        conditions = make_conditions(m.condition, real, m.num_classes, m.resolution, m.channels, text_table)
        info = {"path": pipe.source, "step": pipe.step, "model": m.name, "condition": m.condition}
        return cls(generate, pipe.noise, m.resolution, m.frames, conditions, info)

    def describe(self):
        return {"kind": self.kind, **self.info, "noise": "sample i = row i of VideoPipeline.noise(n, seed)"}

    def plan(self, n, frames, seed):
        """Rows (sample i, frame offset, n): the noise of sample i is row i of noise(n, seed)."""
        if seed != self._seed:
            self._noise, self._seed = {}, seed
        if n not in self._noise:
            self._noise[n] = self.noise(n, seed)
        rng = np.random.default_rng([seed, 1])
        return np.stack([np.arange(n), self._offsets(np.full(n, self.length), frames, rng), np.full(n, n)], 1)

    def load(self, refs, frames, size):
        items = refs[:, 0]
        z = torch.stack([self._noise[int(total)][int(i)] for i, total in zip(items, refs[:, 2])])
        cond = None if self.conditions is None else self.conditions(items)
        clips = self.generate(z, cond)
        clips = np.stack([c[o : o + frames] for c, o in zip(clips, refs[:, 1])])
        return _resize(clips, size)


def make_conditions(
    kind: str, real: Source | None, num_classes: int, resolution: int, channels: int, text_table: torch.Tensor | None = None
) -> Callable | None:
    """Condition for generated sample i, taken from real clip i mod N (labels, first frame, caption)."""
    from vidgan.data.video_io import to_model

    if kind == "none":
        return None
    dataset = real if isinstance(real, DatasetSource) else None
    if kind == "class":
        if dataset is not None and dataset.data.num_classes == num_classes:
            labels = dataset.data.labels.clamp(min=0)
            return lambda items: make_condition(kind, labels=labels[torch.from_numpy(items % len(labels))])
        return lambda items: make_condition(kind, labels=default_labels(int(items.max()) + 1, num_classes)[torch.from_numpy(items)])
    if real is None or real.count is None:
        raise ValueError(f"a {kind}-conditional model takes its conditions from the real clips: pass --real DATA")
    if kind == "first-frame":

        def first_frames(items):
            refs = np.stack([items % real.count, np.zeros_like(items)], 1)
            clip = real.load(refs, 1, resolution)
            if clip.shape[-1] != channels:
                clip = clip.mean(-1, keepdims=True).round().astype(np.uint8) if channels == 1 else np.repeat(clip, 3, -1)
            return make_condition(kind, first_frames=to_model(clip)[:, :, 0])

        return first_frames
    if kind == "text":
        if text_table is None:
            if dataset is None:
                raise ValueError(
                    "a text-conditional model takes captions from the real clips: pass a prepared dataset with captions as --real"
                )
            text_table = caption_embeddings(dataset.data)
        table = text_table
        return lambda items: make_condition(kind, text=table[torch.from_numpy(items % len(table))])
    raise ValueError(f"unknown condition {kind!r}")


def open_source(path, real: Source | None = None, size: int | None = None, step: int | None = None, device: str = "cpu") -> Source:
    """A run / checkpoint / saved pipeline, a prepared dataset, or a folder of videos."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; pass a run folder, a prepared dataset or a folder of videos")
    if (path / INDEX_NAME).is_file():
        return DatasetSource(path)
    if is_run(path) or is_checkpoint(path):
        from vidgan.pipeline import VideoPipeline

        return GeneratorSource.from_pipeline(VideoPipeline.from_pretrained(path, step=step, device=device), real)
    if path.is_dir():
        return FolderSource(path, size)
    raise ValueError(f"{path}: not a run folder, prepared dataset (index.json) or folder of videos")
