"""Write videos (mp4, webm, gif, a folder of png frames) and preview grids from uint8 clips.

Clips here are uint8 numpy arrays (T, H, W, C), C = 1 or 3 (vidgan.data.video_io describes the
layouts). Every file is written under a temporary name and renamed, so a crash never leaves a
half-written file under the final name.
"""

from __future__ import annotations

import math
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

WRITE_SUFFIXES = (".mp4", ".webm", ".gif", ".png")

# Constant-quality settings (lower crf = better). "high" keeps round trips within a few
# levels on smooth content, which is what sample grids and test fixtures need.
CRF = {
    "libx264": {"high": 15, "medium": 23, "low": 30},
    "libvpx-vp9": {"high": 20, "medium": 32, "low": 42},
}


# ----------------------------------------------------------------------------- writing


def write_video(path, frames: np.ndarray, fps: float = 8.0, quality: str = "high") -> Path:
    """Write uint8 (T, H, W, C), C = 1 or 3, and return the path written. The suffix picks the format:

    .mp4  H.264 yuv420p.  .webm  VP9 yuv420p.  Both need even sizes, so an odd height or width is
          padded by one row/column repeating the edge; the file then reads back one pixel larger.
    .gif  animated, loops forever, one 256-colour palette per frame; frame delays are whole
          centiseconds, so e.g. 8 fps is stored as delays 13, 12, 13, ...
    .png  `path` without its suffix is a folder; frames go in as frame_00000.png, ... and the
          folder is returned.
    quality ("high", "medium", "low") sets the mp4/webm constant-quality level; gif/png ignore it.
    The file is written under a temporary name and renamed, so a crash never leaves a
    half-written file under the final name.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"{path}: cannot write '{path.suffix}' videos; use one of {', '.join(WRITE_SUFFIXES)}")
    if quality not in CRF["libx264"]:
        raise ValueError(f"quality must be one of {', '.join(CRF['libx264'])}, got {quality!r}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = _as_rgb(frames)
    if suffix == ".png":
        return _write_png_folder(path.with_suffix(""), frames)

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".gif":
            with av.open(str(temporary), "w", format="gif", container_options={"loop": "0"}) as container:
                _encode_gif(container, frames, fps)
        elif suffix == ".mp4":
            with av.open(str(temporary), "w", format="mp4") as container:
                _encode_yuv420p(container, "libx264", {"crf": str(CRF["libx264"][quality]), "preset": "medium"}, frames, fps)
        else:  # .webm; b=0 turns on constant-quality mode, row-mt uses all cores on one frame
            options = {"crf": str(CRF["libvpx-vp9"][quality]), "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
            with av.open(str(temporary), "w", format="webm") as container:
                _encode_yuv420p(container, "libvpx-vp9", options, frames, fps)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _as_rgb(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3) or len(frames) == 0:
        raise ValueError(f"expected uint8 frames (T, H, W, C) with T >= 1 and C 1 or 3, got {frames.dtype} {tuple(frames.shape)}")
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)  # 29.97 -> 2997/100, 30000/1001 stays exact


def _encode_yuv420p(container, codec: str, options: dict, frames: np.ndarray, fps: float) -> None:
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:  # 4:2:0 chroma is half size, so the encoders need even sizes
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    stream = container.add_stream(codec, rate=_rate(fps), options=options)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    # The library regenerates clips and compares the decoded frames, so the same frames must give
    # the same bytes: x264 splits frames, not slices, between threads (repeatable by its design; as
    # fast at 128-256 px, 6x faster at 32 px), and the colour conversion runs on one thread.
    if codec == "libx264":
        stream.codec_context.thread_type = "FRAME"
    for frame in frames:
        yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", threads=1)
        container.mux(stream.encode(yuv))
    container.mux(stream.encode())  # flush delayed frames


def _encode_gif(container, frames: np.ndarray, fps: float) -> None:
    stream = container.add_stream("gif", rate=_rate(fps))
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "pal8"
    for frame in frames:
        # A palette per frame follows colours that change over time far better than one
        # global palette; median cut without dithering keeps smooth areas smooth.
        indexed = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT)
        rgb = np.asarray(indexed.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256]
        argb = np.zeros((256, 4), dtype=np.uint8)
        argb[:, 0] = 255  # opaque
        argb[: len(rgb), 1:] = rgb
        container.mux(stream.encode(av.VideoFrame.from_ndarray((np.asarray(indexed), argb), format="pal8")))
    container.mux(stream.encode())


def _write_png_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(temporary / f"frame_{index:05d}.png")
        if folder.exists():  # a folder can only be renamed onto an empty one: move the old one aside first
            old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
            os.replace(folder, old)
            shutil.rmtree(old)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


# ----------------------------------------------------------------------------- grids


def make_grid(clips, nrow: int | None = None, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile N clips, uint8 (N, T, H, W, C) or a list of (T_i, H, W, C), row-major into one video (T, H', W', C).

    nrow clips per row (default ceil(sqrt(N))), `pad` pixels of `pad_value` between and around
    tiles. The grid lasts as long as the longest clip; shorter clips hold their last frame.
    """
    clips = [np.asarray(clip) for clip in clips]
    if not clips or any(clip.dtype != np.uint8 or clip.ndim != 4 or len(clip) == 0 for clip in clips):
        raise ValueError("expected one or more non-empty uint8 clips (T, H, W, C)")
    _, height, width, channels = clips[0].shape
    if any(clip.shape[1:] != (height, width, channels) for clip in clips):
        raise ValueError(f"clips differ in (H, W, C): {sorted({clip.shape[1:] for clip in clips})}")
    columns = min(nrow or math.ceil(math.sqrt(len(clips))), len(clips))
    rows = math.ceil(len(clips) / columns)
    length = max(len(clip) for clip in clips)
    grid = np.full((length, pad + rows * (height + pad), pad + columns * (width + pad), channels), pad_value, dtype=np.uint8)
    for k, clip in enumerate(clips):
        top, left = pad + (k // columns) * (height + pad), pad + (k % columns) * (width + pad)
        grid[: len(clip), top : top + height, left : left + width] = clip
        grid[len(clip) :, top : top + height, left : left + width] = clip[-1]
    return grid


PREVIEW_TILE = 128  # grid previews enlarge small clips to at least this many pixels a side, so a person can judge them


def enlarge(clips, min_side: int) -> list[np.ndarray]:
    """Clips (T, H, W, C) repeated nearest-neighbour by the whole factor that makes their longer side >= min_side."""
    clips = [np.asarray(clip) for clip in clips]
    factor = max(1, math.ceil(min_side / max(clips[0].shape[1:3]))) if clips else 1
    return [clip.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else clip for clip in clips]


def write_grid(path, clips, nrow: int | None = None, fps: float = 8.0, pad: int = 2, min_tile: int = PREVIEW_TILE) -> Path:
    """A preview grid of clips: each tile enlarged (nearest neighbour, whole factors) to at least
    `min_tile` pixels a side; the clip files themselves keep their true size."""
    return write_video(path, make_grid(enlarge(clips, min_tile), nrow=nrow, pad=pad), fps=fps)
