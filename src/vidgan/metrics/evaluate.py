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
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidgan.data.video_io import to_uint8
from vidgan.metrics import frechet
from vidgan.metrics.diversity import feature_diversity
from vidgan.metrics.extraction import CLIP_SAMPLING, KEEP_ROWS_UP_TO, EvalOptions, extract, real_features
from vidgan.metrics.extractors import get_extractor
from vidgan.metrics.inception_score import inception_score
from vidgan.metrics.precision_recall import prdc
from vidgan.metrics.registry import MetricSpec, parse_metrics
from vidgan.metrics.sources import DatasetSource, GeneratorSource, Source, make_conditions, open_source
from vidgan.run import METRICS, CheckpointError, Run, is_checkpoint, is_run, step_of

KID_SUBSETS, KID_SUBSET_SIZE, PR_K, IS_SPLITS = 100, 1000, 5, 10


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
    specs = parse_metrics(options.metrics, options.n, options.effnet_size, options.precision)
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
            "network_input": _network_input(extractor, size),
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


def _network_input(extractor, size: int) -> str:
    """What the network sees, said plainly: clips smaller than its input are upsampled (no detail is added)."""
    net = getattr(extractor, "size", None)
    if net is None:
        return f"{size}x{size} clips, resized by the network file itself"
    if size < net:
        return f"{size}x{size} clips upsampled to {net}x{net} (bilinear): the network sees no detail finer than {size} px"
    return f"{size}x{size} clips resized to {net}x{net} (bilinear, antialiased)"


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

    options = options or EvalOptions()
    target = Path(target)
    real_source = None if real is None else open_source(real, size=options.size)
    if isinstance(real_source, GeneratorSource):
        raise ValueError(f"{real}: --real must be a prepared dataset or a folder of videos, not a run")
    out = Path(out) if out is not None else (target.parent.parent if is_checkpoint(target) else target)
    metrics_file = out / METRICS
    steps: list[int | None] = [step]
    if all_checkpoints:
        if not is_run(target):
            raise ValueError(f"{target}: --all-checkpoints needs a run folder (with checkpoints/)")
        steps = [step_of(p) for p in Run(target).checkpoints()]
        if not steps:
            raise CheckpointError(f"{target}: no checkpoint found; train it first")
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
            append_records(Run(self.run_dir).metrics_path, ev.records)
        return ev.records
