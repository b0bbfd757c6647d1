"""The library's file store: durable writes, previews, first-frame assets, placing files into store/."""

from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vidgan.data.video_io import VIDEO_SUFFIXES
from vidgan.library.catalog import Library
from vidgan.library.hashing import frames_hash, rgb
from vidgan.library.tables import LibraryError, asset_path

TMP_GRACE = 600.0  # seconds: younger files in store/tmp may belong to an ingest in progress
LOSSLESS_FORMAT = "apng"  # a folder of frames (generate --format png) is stored as one lossless animated PNG
CLIP_FORMATS = tuple(s.lstrip(".") for s in VIDEO_SUFFIXES) + (LOSSLESS_FORMAT,)
BROWSER_VIDEO = ("mp4", "webm")  # a <video> plays these; gif/apng show as <img>; others only via the preview


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_apng(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Lossless animated PNG through FFmpeg (every frame kept; PIL would merge equal neighbours)."""
    frames = rgb(frames)
    with av.open(str(path), "w", format="apng") as container:
        stream = container.add_stream("apng", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb24"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def write_preview(path: Path, frames: list[np.ndarray], fps: float, stride: int) -> None:
    images = [Image.fromarray(f) for f in frames]
    duration = max(20, round(1000 * stride / fps))
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=duration, loop=0, quality=75, method=4)


def tmp_dir(lib: Library) -> Path:
    tmp = lib.store / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def place_files(lib: Library, moves: list[tuple[Path, str]], created: list[Path], durable: bool = True) -> None:
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
            fsync_file(directory)


def store_asset(lib: Library, frame: np.ndarray) -> Path:
    """Keep an input image (uint8 (H, W, C)) losslessly under store/assets/<frames_hash>.png."""
    final = lib.root / asset_path(frames_hash(frame[None]))
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir(lib) / f"{uuid.uuid4().hex}.png"
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
