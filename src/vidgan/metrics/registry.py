"""Metrics by name. The name says what was measured, StyleGAN-V style:

    fvd2048_16f        Frechet distance of I3D features, 2048 generated clips of 16 frames (FVD)
    kvd2048_16f        kernel (MMD) distance of the same features (KVD)
    fd_effnet2048_16f  Frechet distance of EfficientNet-Lite0 clip features (offline default; not FVD)
    kd_effnet2048_16f  kernel distance of the same features
    pr2048_16f         precision / recall / density / coverage, k = 5, in EfficientNet-Lite0 clip space
    diversity2048_16f  mean pairwise distance of generated clips / of real clips, and near-duplicates
    fid50k             Frechet distance of Inception pool features of 50k frames (one per clip) (FID)
    is2048             Inception Score of 2048 generated frames (one per clip), 10 splits
    isv2048_16f        video Inception Score: UCF-101 C3D class probabilities of 2048 16-frame clips, 10 splits

The count may be written 2048 or 50k. A bare family name (`fd_effnet`, `pr`, `fid`, ...) takes its
count from --n (else the family's standard count) and 16 frames, or every frame of clips shorter
than that; `--n` also replaces the count of full names. Either way the recorded name is rebuilt
from what was actually computed, so `fd_effnet2048_16f --n 64` is recorded as `fd_effnet64_16f`.
EfficientNet at an input size other than 224 adds `_<size>px` to the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Family:
    extractor: str  # feature network (extractors.EXTRACTORS)
    output: str  # which of its outputs: "video" (per clip) or "pool"/"probs" (per frame)
    kind: str  # "fd", "kd", "pr", "diversity", "is"
    default_n: int
    needs_real: bool = True


FAMILIES = {
    "fvd": Family("i3d", "video", "fd", 2048),
    "kvd": Family("i3d", "video", "kd", 2048),
    "fd_effnet": Family("effnet-lite0", "video", "fd", 2048),
    "kd_effnet": Family("effnet-lite0", "video", "kd", 2048),
    "pr": Family("effnet-lite0", "video", "pr", 2048),
    "diversity": Family("effnet-lite0", "video", "diversity", 2048),
    "fid": Family("inception", "pool", "fd", 50_000),
    "is": Family("inception", "probs", "is", 2048, needs_real=False),
    "isv": Family("c3d", "video", "is", 2048, needs_real=False),
}
VIDEO_FAMILIES = [f for f, fam in FAMILIES.items() if fam.output == "video"]
FRAME_FAMILIES = [f for f, fam in FAMILIES.items() if fam.output != "video"]
STANDARD_FRAMES = 16
EFFNET_SIZE = 224

_COUNT = r"(\d+k?)"
_VIDEO_RE = re.compile(rf"^({'|'.join(sorted(VIDEO_FAMILIES, key=len, reverse=True))}){_COUNT}_(\d+)f$")
_FRAME_RE = re.compile(rf"^({'|'.join(FRAME_FAMILIES)}){_COUNT}$")


def format_count(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _parse_count(text: str) -> int:
    return int(text[:-1]) * 1000 if text.endswith("k") else int(text)


@dataclass(frozen=True)
class MetricSpec:
    family: str
    n: int
    frames: int | None  # clip length for video metrics; None for frame metrics (one frame per clip)
    strict: bool  # False for bare names: frames shrink to the clip length when clips are shorter
    requested: str
    effnet_size: int = EFFNET_SIZE
    precision: str = "fp32"  # "bf16": a faster protocol whose scores move (about 1% for fd_effnet): its own name

    @property
    def info(self) -> Family:
        return FAMILIES[self.family]

    @property
    def name(self) -> str:
        reduced = "_bf16" if self.precision == "bf16" else ""
        if self.frames is None:
            return f"{self.family}{format_count(self.n)}{reduced}"
        suffix = f"_{self.effnet_size}px" if self.info.extractor == "effnet-lite0" and self.effnet_size != EFFNET_SIZE else ""
        return f"{self.family}{format_count(self.n)}_{self.frames}f{suffix}{reduced}"

    @property
    def group(self) -> tuple:
        """Metrics with the same group share one pass of feature extraction."""
        return (self.info.extractor, self.info.output if self.frames is None else "video", self.frames, self.n)

    def fit_frames(self, available: int) -> MetricSpec:
        """This spec for clips `available` frames long: shorter for bare names, an error for full ones."""
        if self.frames is None or available >= self.frames:
            return self
        if self.strict:
            raise ValueError(
                f"{self.name} needs clips of {self.frames} frames but these have {available}; "
                f"use {self.family}{format_count(self.n)}_{available}f or the bare name {self.family}"
            )
        return replace(self, frames=available)


def parse_metric(text: str, n: int | None = None, effnet_size: int = EFFNET_SIZE, precision: str = "fp32") -> MetricSpec:
    """A metric name (full or bare) as a MetricSpec; `n` replaces the count."""
    name = text.strip()
    if name in FAMILIES:
        fam = FAMILIES[name]
        frames = STANDARD_FRAMES if fam.output == "video" else None
        spec = MetricSpec(name, n or fam.default_n, frames, strict=False, requested=name)
    elif m := _VIDEO_RE.match(name):
        spec = MetricSpec(m[1], n or _parse_count(m[2]), int(m[3]), strict=True, requested=name)
    elif m := _FRAME_RE.match(name):
        spec = MetricSpec(m[1], n or _parse_count(m[2]), None, strict=True, requested=name)
    else:
        raise ValueError(
            f"unknown metric {name!r}; use e.g. fd_effnet2048_16f, kd_effnet2048_16f, fvd2048_16f, fvd2048_128f, kvd2048_16f, "
            f"fid50k, is2048, isv2048_16f, pr, diversity (or a bare family: {', '.join(FAMILIES)})"
        )
    if spec.n < 2 or (spec.frames is not None and spec.frames < 1):
        raise ValueError(f"{name}: needs at least 2 clips and 1 frame")
    return replace(spec, effnet_size=effnet_size, precision="bf16" if precision == "bf16" else "fp32")


def parse_metrics(text: str | list[str], n: int | None = None, effnet_size: int = EFFNET_SIZE, precision: str = "fp32") -> list[MetricSpec]:
    names = text.split(",") if isinstance(text, str) else list(text)
    specs = [parse_metric(t, n, effnet_size, precision) for t in names if t.strip()]
    if not specs:
        raise ValueError("no metrics given; e.g. --metrics fd_effnet2048_16f,pr,diversity")
    return specs
