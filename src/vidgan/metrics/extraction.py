"""Feature passes: clips from a source through a feature network, gathered across ranks, with the
real side's statistics cached (vidgan.metrics.frechet)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidgan.metrics import frechet
from vidgan.metrics.sources import Source

CLIP_SAMPLING = "{frames} consecutive frames at a seeded random offset, one clip per item"
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
    starts = list(range(0, len(local), batch_size))
    # The next batch is decoded / generated / resized in a second thread while this one goes through
    # the network (PyAV, NumPy and the networks release the GIL), so loading costs no extra time.
    pool = ThreadPoolExecutor(1, thread_name_prefix="vidgan-load")
    load = partial(_load, source, local, batch_size, frames, size)
    try:
        pending = pool.submit(load, starts[0]) if starts else None
        for j in range(len(starts)):
            clips = pending.result()
            pending = pool.submit(load, starts[j + 1]) if j + 1 < len(starts) else None
            with torch.no_grad():
                out = extractor(torch.from_numpy(np.ascontiguousarray(clips)), outputs)
            for k in outputs:
                stats[k].append(out[k].numpy())
            bar.update(len(clips))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if world > 1:
        for k in outputs:
            rows = torch.from_numpy(stats[k].features) if stats[k].count else torch.zeros(0, 1)
            stats[k] = frechet.FeatureStats.from_features(_gather_rows(rows, len(refs), world, device).numpy(), keep_features=True)
    return stats


def _load(source: Source, refs: list, batch_size: int, frames: int, size: int, start: int) -> np.ndarray:
    return source.load(refs[start : start + batch_size], frames, size)


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
