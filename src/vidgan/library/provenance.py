"""Generated clips' provenance: the records of a `vidgan generate` call, filing them, and regenerating a clip from its record."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vidgan.data.video_io import iter_frames
from vidgan.data.video_write import write_video
from vidgan.library.catalog import Library
from vidgan.library.hashing import digest_frames, frames_hash, sha256_file
from vidgan.library.ingest import DEFAULT_THRESHOLD, Ingester, IngestResult
from vidgan.library.queries import get_clip
from vidgan.library.store import LOSSLESS_FORMAT, load_asset, store_asset, tmp_dir, write_apng
from vidgan.library.tables import LibraryError
from vidgan.run import CHECKPOINTS, Run, generator_file


def run_scores(run_dir: Path | None, step: int | None) -> dict[str, tuple[float, str]]:
    """Scores of the checkpoint a clip came from, from RUN/metrics.jsonl (the lines vidgan.metrics
    appends, StyleGAN2-ADA style: {"step": S, "results": {"fvd2048_16f": 312.5}, "protocol": {...}}), when present."""
    if run_dir is None or step is None or not Run(run_dir).metrics_path.is_file():
        return {}
    scores = {}
    for line in Run(run_dir).metrics_path.read_text().splitlines():
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
    weights = generator_file(pipe.source, ema)
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
            "writer": "vidgan.data.video_write.write_video(quality='high')",
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
            store_asset(lib, first_frame)
        ingester = Ingester(lib, threshold=threshold)
        results = []
        for record, path in zip(records, paths):
            scores = run_scores(record.get("run"), record.get("step"))
            results.append(ingester.add_file(path, provenance=record, tags=tags, scores=scores, caption=record.get("text"), fps=fps))
        return results
    finally:
        lib.close()


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
        weights_dir = Run(run).checkpoint_dir(prov.step) if (run / CHECKPOINTS).is_dir() and prov.step is not None else run
    elif not weights_dir.exists() and prov.run and prov.step is not None:
        weights_dir = Run(prov.run).checkpoint_dir(prov.step)
    weights = generator_file(weights_dir, bool(prov.ema))
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
    clips = pipe.replay(call, first_frame)
    frames = clips[prov.index]
    output_match = None if not prov.output_sha256 else frames_hash(frames) == prov.output_sha256
    with tempfile.TemporaryDirectory(dir=tmp_dir(lib)) as tmp:
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
