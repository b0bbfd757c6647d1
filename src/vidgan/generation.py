"""The generation service: generate -> save -> manifest -> optional ingest, for `vidgan generate` and `vidgan demo`.

`generate(run, out, call)` loads the generator, makes the clips of one call, writes them (and grid
previews) into OUT, writes OUT/generated.json (what each clip is: the call that replays it and its
full provenance, so `vidgan library add LIB OUT/clip_*.mp4` later files them as regenerable as
--to-library does), and with `to_library` files them in a library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidgan.data.video_write import write_video
from vidgan.library.ingest import IngestResult
from vidgan.library.provenance import generation_records, ingest_generated
from vidgan.pipeline import VideoPipeline, load_image, save_clips

MANIFEST = "generated.json"
CALL_KEYS = ("n", "seed", "label", "text", "frames", "truncation", "hold", "interpolate", "temperature", "top_k", "time_scale")


@dataclass
class Generated:
    pipe: VideoPipeline
    clips: np.ndarray  # uint8 (n, T, H, W, C)
    paths: list[Path]
    records: list[dict]  # per clip: its provenance
    filed: list[IngestResult] = field(default_factory=list)


def write_manifest(out: Path, pipe: VideoPipeline, call: dict, records: list[dict], paths: list[Path], first_frame: str | None) -> Path:
    """OUT/generated.json, written whole (temporary file + rename)."""
    condition = {k: v for k, v in call.items() if k not in ("n", "seed", "batch_size") and v is not None}
    if first_frame:
        condition["first_frame"] = first_frame
    manifest = {
        "source": pipe.source,
        "step": pipe.step,
        "model": pipe.config.model.name,
        "seed": call.get("seed"),
        "condition": condition,
        "clips": [{"file": p.name, "index": i, "provenance": r} for i, (p, r) in enumerate(zip(paths, records))],
        "note": "clip i is sample i of VideoPipeline(n=len(clips), seed=seed)",
    }
    path = out / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return path


def generate(
    run: str | Path,
    out: str | Path,
    call: dict,
    fmt: str = "mp4",
    grid: bool = True,
    step: int | None = None,
    ema: bool = True,
    device: str = "cpu",
    first_frame: str | Path | None = None,
    to_library: str | Path | None = None,
    tags: Iterable[str] = (),
) -> Generated:
    """The clips of `call` (keys: CALL_KEYS; missing ones are None) from the generator of `run`, into `out`."""
    unknown = set(call) - set(CALL_KEYS)
    if unknown:
        raise ValueError(f"unknown generate settings {sorted(unknown)}; known: {', '.join(CALL_KEYS)}")
    call = {k: call.get(k) for k in CALL_KEYS} | {"n": call.get("n", 16), "seed": call.get("seed", 0)}
    out = Path(out)
    pipe = VideoPipeline.from_pretrained(run, step=step, ema=ema, device=device)
    m = pipe.config.model
    frame = None if first_frame is None else load_image(first_frame, m.resolution, m.channels)
    call["label"] = pipe.label_index(call["label"])  # a class name ("red") or an index ("3") -> the index
    if call["interpolate"]:
        call["interpolate"] = list(call["interpolate"])
    clips = pipe.replay(call, first_frame=frame)
    paths = save_clips(pipe, clips, out, fmt=fmt, grid=grid)
    if call["interpolate"]:  # the morph as one video: the clips one after another
        write_video(out / f"interpolation.{'mp4' if fmt == 'png' else fmt}", np.concatenate(list(clips)), fps=pipe.fps)
    frame_path = None if first_frame is None else str(Path(first_frame).resolve())
    records = generation_records(
        pipe, clips, call, ema=ema, run=run, fmt=fmt, first_frame=frame, first_frame_path=frame_path, device=device
    )
    write_manifest(out, pipe, call, records, paths, None if first_frame is None else str(first_frame))
    filed = [] if to_library is None else ingest_generated(to_library, records, paths, fps=pipe.fps, first_frame=frame, tags=tags)
    return Generated(pipe, clips, paths, records, filed)
