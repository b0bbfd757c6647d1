"""Evaluate generated clips against real clips: the protocol, feature passes, metrics.jsonl, report.html.

Either side is a *source* of uint8 clips: a run (or one checkpoint, or a saved pipeline), a
prepared dataset, or a folder of videos. The protocol, written next to every number:

- Clips: `frames` consecutive frames at a random offset inside each item, one clip per item
  (dataset clip, video file or generated sample), items and offsets drawn with a fixed seed.
  Video files shorter than `frames` are dropped (and counted). Generated clip i is sample i of
  VideoPipeline(n, seed); conditional models take their conditions from the real clips (labels,
  first frames, captions of real clip i mod N).
- Resolution S: the generated side's (or --size). Clips reach S once: video files decode
  straight to S (libswscale AREA, shorter side, centre crop, as `vidgan prepare` does); arrays at
  another size go through torch area (shrink) or bilinear (enlarge) interpolation. Then each
  feature network resizes to its own input as extractors.py states. Pixels stay uint8 until then.
- Real statistics (and, for kernel/k-NN metrics, real feature rows) are cached under
  ~/.cache/vidgan/metrics (or $VIDGAN_CACHE_DIR), keyed by dataset fingerprint + protocol + network.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vidgan.data.clips import INDEX_NAME, ClipDataset
from vidgan.data.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, probe, read_video, to_uint8
from vidgan.metrics import frechet
from vidgan.metrics.diversity import feature_diversity
from vidgan.metrics.extractors import get_extractor
from vidgan.metrics.inception_score import inception_score
from vidgan.metrics.precision_recall import prdc
from vidgan.metrics.registry import MetricSpec, parse_metrics

CLIP_SAMPLING = "{frames} consecutive frames at a seeded random offset, one clip per item"
KID_SUBSETS, KID_SUBSET_SIZE, PR_K, IS_SPLITS = 100, 1000, 5, 10
FRAMES_PER_BATCH = 512  # caps clips per feature batch for long clips (memory)
KEEP_ROWS_UP_TO = 20_000  # per-clip feature rows kept (for kernel / k-NN metrics and the report) up to this many


@dataclass
class EvalOptions:
    metrics: str | list[str] = "fd_effnet2048_16f,pr,diversity"
    n: int | None = None  # replaces the count in every metric name
    seed: int = 0
    size: int | None = None  # evaluation resolution (default: the generated side's)
    batch_size: int = 16
    device: str = "cpu"
    precision: str = "auto"
    i3d_weights: str | Path | None = None
    inception_weights: str | Path | None = None
    c3d_weights: str | Path | None = None
    effnet_size: int = 224
    cache: bool = True
    cache_dir: str | Path | None = None
    progress: bool = True


# ----------------------------------------------------------------------------- sources


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
        from vidgan.data.prepare import scan_sources

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
    from vidgan.models.layers import Condition

    if kind == "none":
        return None
    dataset = real if isinstance(real, DatasetSource) else None
    if kind == "class":
        if dataset is not None and dataset.data.num_classes == num_classes:
            labels = dataset.data.labels.clamp(min=0)
            return lambda items: Condition(labels=labels[torch.from_numpy(items % len(labels))])
        return lambda items: Condition(labels=torch.from_numpy(items % num_classes))
    if real is None or real.count is None:
        raise ValueError(f"a {kind}-conditional model takes its conditions from the real clips: pass --real DATA")
    if kind == "first-frame":

        def first_frames(items):
            refs = np.stack([items % real.count, np.zeros_like(items)], 1)
            clip = real.load(refs, 1, resolution)
            if clip.shape[-1] != channels:
                clip = clip.mean(-1, keepdims=True).round().astype(np.uint8) if channels == 1 else np.repeat(clip, 3, -1)
            return Condition(first_frame=to_model(clip)[:, :, 0])

        return first_frames
    if kind == "text":
        if text_table is None:
            if dataset is None:
                raise ValueError(
                    "a text-conditional model takes captions from the real clips: pass a prepared dataset with captions as --real"
                )
            from vidgan.training.loop import caption_embeddings

            text_table = caption_embeddings(dataset.data)
        table = text_table
        return lambda items: Condition(text=table[torch.from_numpy(items % len(table))])
    raise ValueError(f"unknown condition {kind!r}")


def is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and ((path / "checkpoints").is_dir() or (path / "generator.safetensors").is_file())


def open_source(path, real: Source | None = None, size: int | None = None, step: int | None = None, device: str = "cpu") -> Source:
    """A run / checkpoint / saved pipeline, a prepared dataset, or a folder of videos."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; pass a run folder, a prepared dataset or a folder of videos")
    if (path / INDEX_NAME).is_file():
        return DatasetSource(path)
    if is_run(path) or (path / "state.json").is_file():
        from vidgan.pipeline import VideoPipeline

        return GeneratorSource.from_pipeline(VideoPipeline.from_pretrained(path, step=step, device=device), real)
    if path.is_dir():
        return FolderSource(path, size)
    raise ValueError(f"{path}: not a run folder, prepared dataset (index.json) or folder of videos")


# ----------------------------------------------------------------------------- features


def _gather_rows(rows: torch.Tensor, n: int, world: int, device) -> torch.Tensor:
    """Rows computed for items rank, rank + world, ... on every rank -> all n rows in item order."""
    import torch.distributed as dist

    per = -(-n // world)
    padded = torch.zeros(per, rows.shape[1], dtype=rows.dtype, device=device)
    padded[: len(rows)] = rows.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    out = torch.empty(n, rows.shape[1], dtype=rows.dtype)
    for r, part in enumerate(parts):
        count = len(range(r, n, world))
        out[r::world] = part[:count].cpu()
    return out


def extract(
    source: Source,
    refs: np.ndarray,
    frames: int,
    extractor,
    outputs: tuple[str, ...],
    size: int,
    keep: bool,
    batch_size: int = 16,
    desc: str = "",
    progress: bool = True,
    rank: int = 0,
    world: int = 1,
    device="cpu",
) -> dict[str, frechet.FeatureStats]:
    """Feature statistics (and rows when `keep`) of the clips `refs` point to, in batches, no_grad.

    With world > 1 every rank takes every world-th clip and the rows are gathered on all ranks."""
    local = refs[rank::world]
    batch_size = max(1, min(batch_size, FRAMES_PER_BATCH // frames))  # 128-frame clips: 4 per batch, not 16
    stats = {k: frechet.FeatureStats(keep or world > 1) for k in outputs}
    bar = tqdm(total=len(local), desc=desc, unit="clip", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        for i in range(0, len(local), batch_size):
            clips = source.load(local[i : i + batch_size], frames, size)
            with torch.no_grad():
                out = extractor(torch.from_numpy(np.ascontiguousarray(clips)), outputs)
            for k in outputs:
                stats[k].append(out[k].numpy())
            bar.update(len(clips))
    finally:
        bar.close()
    if world > 1:
        for k in outputs:
            rows = torch.from_numpy(stats[k].features) if stats[k].count else torch.zeros(0, 1)
            stats[k] = frechet.FeatureStats.from_features(_gather_rows(rows, len(refs), world, device).numpy(), keep_features=True)
    return stats


def real_features(
    source: Source, frames: int, n: int, extractor, output: str, size: int, keep: bool, options: EvalOptions, desc: str
) -> frechet.CachedFeatures:
    """Real-side statistics for one feature pass, from the cache when an identical pass was done before."""
    protocol = {
        "clips": CLIP_SAMPLING.format(frames=frames),
        "frames": frames,
        "n": n,
        "seed": options.seed,
        "resolution": size,
        "output": output,
    }
    fingerprint = source.fingerprint() if options.cache else None
    path = None
    if fingerprint is not None:
        key = frechet.cache_key(fingerprint, protocol, extractor.ident)
        path = Path(options.cache_dir or frechet.default_cache_dir()) / f"{extractor.name}-{key}.npz"
        hit = frechet.load_cached(path, need_features=keep)
        if hit is not None:
            hit.meta["cache"] = str(path)
            hit.meta["cache_hit"] = True
            return hit
    refs = source.plan(n, frames, options.seed)
    stats = extract(source, refs, frames, extractor, (output,), size, keep, options.batch_size, desc, options.progress)[output]
    entry = frechet.CachedFeatures(stats, refs, {"source": source.describe(), "protocol": protocol, "fingerprint": fingerprint})
    if path is not None:
        frechet.save_cached(path, entry)
        entry.meta["cache"] = str(path)
    entry.meta["cache_hit"] = False
    return entry


# ----------------------------------------------------------------------------- metrics


@dataclass
class GroupResult:
    """One feature pass: both sides' features and what came from them."""

    spec: MetricSpec
    real: frechet.CachedFeatures | None
    fake: frechet.FeatureStats
    fake_refs: np.ndarray
    protocol: dict


@dataclass
class Evaluation:
    records: list[dict]
    groups: list[GroupResult] = field(default_factory=list)
    fake: Source | None = None
    real: Source | None = None
    size: int = 0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _extractor_for(spec: MetricSpec, options: EvalOptions, device):
    weights = {"i3d": options.i3d_weights, "inception": options.inception_weights, "c3d": options.c3d_weights}.get(spec.info.extractor)
    size = options.effnet_size if spec.info.extractor == "effnet-lite0" else None
    return get_extractor(spec.info.extractor, device, options.precision, weights, size)


def compute(
    fake: Source, real: Source | None, options: EvalOptions, step: int | None = None, rank: int = 0, world: int = 1, device=None
) -> Evaluation:
    """All requested metrics of `fake` against `real`; records are returned (rank 0 only under DDP)."""
    device = device if device is not None else torch.device(options.device)
    specs = parse_metrics(options.metrics, options.n, options.effnet_size)
    lengths = [s.length for s in (fake, real) if s is not None and s.length is not None]
    available = min(lengths) if lengths else None
    if available is not None:
        specs = [s.fit_frames(available) for s in specs]
    if real is None and any(s.info.needs_real for s in specs):
        raise ValueError("these metrics compare with real clips: pass --real DATA")
    size = options.size or fake.resolution
    groups: dict[tuple, list[MetricSpec]] = {}
    for s in specs:
        groups.setdefault(s.group, []).append(s)

    records, results = [], []
    for members in groups.values():
        t0 = time.monotonic()
        spec = members[0]
        extractor = _extractor_for(spec, options, device)
        frames = spec.frames or 1
        output = spec.info.output
        keep = spec.n <= KEEP_ROWS_UP_TO or any(m.info.kind in ("kd", "pr", "diversity", "is") for m in members)
        needs_real = any(m.info.needs_real for m in members)
        fake_refs = fake.plan(spec.n, frames, options.seed)
        fake_stats = extract(
            fake,
            fake_refs,
            frames,
            extractor,
            (output,),
            size,
            keep,
            options.batch_size,
            f"generated {extractor.name}",
            options.progress and rank == 0,
            rank,
            world,
            device,
        )[output]
        if rank != 0:
            continue
        real_entry = None
        if needs_real:
            real_entry = real_features(real, frames, spec.n, extractor, output, size, keep, options, f"real {extractor.name}")
        protocol = {
            "clips": CLIP_SAMPLING.format(frames=frames) if spec.frames else "1 frame at a seeded random time per clip",
            "frames": spec.frames,
            "seed": options.seed,
            "resolution": size,
            "resize_to_resolution": "video files: libswscale AREA (shorter side) + centre crop; arrays: torch area (shrink) / bilinear (enlarge)",
            "extractor": extractor.describe(),
            "fake": fake.describe(),
            "real": None if real is None else real.describe(),
            "real_cache": None if real_entry is None else {"file": real_entry.meta.get("cache"), "hit": real_entry.meta.get("cache_hit")},
        }
        result = GroupResult(spec, real_entry, fake_stats, fake_refs, protocol)
        results.append(result)
        seconds = time.monotonic() - t0
        for member in members:
            for name, value, extra, proto_extra in _metric_values(member, result):
                records.append(
                    {
                        "metric": name,
                        "value": value,
                        "results": {name: value},
                        "n": fake_stats.count,
                        "n_real": None if real_entry is None else real_entry.stats.count,
                        "requested": member.requested,
                        "extractor": extractor.name,
                        "step": step,
                        "time": _now(),
                        "seconds": round(seconds, 2),
                        **extra,
                        "protocol": {**protocol, **proto_extra},
                    }
                )
    return Evaluation(records, results, fake, real, size)


def _metric_values(spec: MetricSpec, g: GroupResult):
    """(name, value, extra fields, protocol additions) for each number a metric reports."""
    kind, name = spec.info.kind, spec.name
    real = None if g.real is None else g.real.stats
    if kind == "fd":
        yield (
            name,
            frechet.stats_distance(g.fake, real),
            {},
            {"distance": "Frechet, float64 mean/covariance (ddof=0), eigenvalue matrix square root"},
        )
    elif kind == "kd":
        mean, std = frechet.kernel_distance(g.fake.features, real.features, KID_SUBSETS, KID_SUBSET_SIZE, seed=0)
        yield (
            name,
            mean,
            {"std": std},
            {"distance": f"unbiased MMD^2, kernel (x.y/d + 1)^3, {KID_SUBSETS} subsets of up to {KID_SUBSET_SIZE}"},
        )
    elif kind == "pr":
        result = prdc(real.features, g.fake.features, k=PR_K)
        for key, value in result.as_dict().items():
            yield f"{name}_{key}", value, {}, {"k": PR_K, "method": "k-NN balls (Kynkaanniemi et al. 2019; Naeem et al. 2020)"}
    elif kind == "diversity":
        d = feature_diversity(g.fake.features, real.features)
        proto = {"method": "mean pairwise L2 distance of generated clips / of real clips; near-duplicate: < 0.1 x real mean distance"}
        yield name, d.ratio, {"alarm": d.alarm, "mean_distance": d.mean_distance, "real_distance": d.real_distance}, proto
        yield f"{name}_near_duplicates", d.near_duplicates, {"alarm": d.alarm}, proto
    elif kind == "is":
        mean, std = inception_score(g.fake.features, IS_SPLITS)
        yield name, mean, {"std": std}, {"splits": IS_SPLITS}
    else:  # pragma: no cover - registry and this table are written together
        raise ValueError(f"no computation for metric kind {kind!r}")


# ----------------------------------------------------------------------------- files


def append_records(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in records:
            fh.write(json.dumps(r, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


@dataclass
class EvalRun:
    records: list[dict]
    metrics_file: Path
    report: Path | None


def evaluate(
    target,
    real,
    options: EvalOptions | None = None,
    out: str | Path | None = None,
    all_checkpoints: bool = False,
    step: int | None = None,
    report: bool = True,
    log=print,
) -> EvalRun:
    """Evaluate a run (newest checkpoint, one `step`, or every checkpoint), a folder of videos or a
    prepared dataset against `real`; append to OUT/metrics.jsonl and write OUT/report.html.

    OUT defaults to the run folder (or the target folder)."""
    from vidgan.metrics.report import write_report
    from vidgan.training import checkpoint as ckpt

    options = options or EvalOptions()
    target = Path(target)
    real_source = None if real is None else open_source(real, size=options.size)
    if isinstance(real_source, GeneratorSource):
        raise ValueError(f"{real}: --real must be a prepared dataset or a folder of videos, not a run")
    out = Path(out) if out is not None else (target.parent.parent if (target / "state.json").is_file() else target)
    metrics_file = out / "metrics.jsonl"
    steps: list[int | None] = [step]
    if all_checkpoints:
        if not is_run(target):
            raise ValueError(f"{target}: --all-checkpoints needs a run folder (with checkpoints/)")
        steps = [int(p.name.split("_")[-1]) for p in ckpt.list_checkpoints(target)]
        if not steps:
            raise ckpt.CheckpointError(f"{target}: no checkpoint found; train it first")
    records, last = [], None
    for at in steps:
        fake = open_source(target, real_source, options.size, at, options.device)
        last = compute(fake, real_source, options, step=fake.info.get("step") if isinstance(fake, GeneratorSource) else None)
        append_records(metrics_file, last.records)
        records += last.records
        for r in last.records:
            fewer = r["n_real"] is not None and r["n_real"] < r["n"]
            log(
                f"{r['metric']}: {r['value']:.6g}"
                + (f" (step {r['step']})" if r["step"] is not None else "")
                + (f"  [only {r['n_real']} real clips]" if fewer else "")
                + (f"  ALARM: {r['alarm']}" if r.get("alarm") else "")
            )
    report_path = None
    if report and last is not None:
        report_path = write_report(out / "report.html", last, read_records(metrics_file), title=str(target))
    return EvalRun(records, metrics_file, report_path)


# ----------------------------------------------------------------------------- during training


def score_line(step: int, records: list[dict]) -> str:
    """The progress line for scores computed during training."""
    return f"step {step}: " + ", ".join(f"{r['metric']} {r['value']:.4g}" for r in records)


class TrainingEval:
    """`train.eval_every`: score the EMA generator against the training data, append to RUN/metrics.jsonl.

    Under DDP every rank generates and extracts its share of the clips; rank 0 gathers the rows,
    computes the numbers (real statistics are cached) and writes."""

    def __init__(self, cfg, run_dir: Path, rank: int = 0, world: int = 1, device="cpu", text_table: torch.Tensor | None = None):
        tc = cfg.train
        self.cfg, self.run_dir, self.rank, self.world, self.device = cfg, Path(run_dir), rank, world, torch.device(device)
        self.options = EvalOptions(
            metrics=tc.eval_metrics,
            n=tc.eval_n,
            seed=tc.seed,
            effnet_size=tc.eval_image_size,
            device=str(device),
            progress=False,
            batch_size=max(1, min(16, tc.eval_n)),
        )
        parse_metrics(self.options.metrics)  # a bad name fails before training starts
        self.real = DatasetSource(cfg.data)
        m = cfg.model
        self.conditions = make_conditions(m.condition, self.real, m.num_classes, m.resolution, m.channels, text_table)

    def __call__(self, G: torch.nn.Module, step: int) -> list[dict]:
        m = self.cfg.model

        @torch.no_grad()
        def generate(z, cond):
            return to_uint8(G(z.to(self.device), None if cond is None else cond.to(self.device)).float().cpu())

        def noise(n, seed):
            return torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))

        fake = GeneratorSource(
            generate,
            noise,
            m.resolution,
            m.frames,
            self.conditions,
            {"path": str(self.run_dir), "step": step, "model": m.name, "weights": "EMA generator during training"},
        )
        ev = compute(fake, self.real, self.options, step=step, rank=self.rank, world=self.world, device=self.device)
        if self.rank == 0:
            append_records(self.run_dir / "metrics.jsonl", ev.records)
        return ev.records
