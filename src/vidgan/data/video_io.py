"""Read, probe and write videos. The only place in vidgan that touches codecs.

Two layouts, used everywhere in vidgan:

- at the edges and on disk a video is a uint8 numpy array (T, H, W, C), C = 1 or 3,
  values 0..255 (T = time, frames; C = channels, RGB or gray);
- inside models a batch of videos is a float tensor (B, C, T, H, W) with values in [-1, 1].

`to_model` and `to_uint8` are the only conversions between the two. Everything else in
this file takes and returns the uint8 layout; readers always return RGB (C = 3).

Resizing (iter_frames/read_video with `size`) uses libswscale's AREA filter, for video
files and frame folders alike, so a clip and its extracted frames give the same pixels.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

if TYPE_CHECKING:
    import torch
WRITE_SUFFIXES = (".mp4", ".webm", ".gif", ".png")

# A folder of frames carries no timing; it plays at this rate. Also used for the rare
# stream that declares no rate at all.
DEFAULT_FPS = 25.0

# Constant-quality settings (lower crf = better). "high" keeps round trips within a few
# levels on smooth content, which is what sample grids and test fixtures need.
CRF = {
    "libx264": {"high": 15, "medium": 23, "low": 30},
    "libvpx-vp9": {"high": 20, "medium": 32, "low": 42},
}


class VideoError(Exception):
    """One-line, human message that names the file and says what to do, e.g.
    "bad.mp4: not a readable video (invalid data found when processing input); re-encode it with ffmpeg or remove it"."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int
    fps: float
    width: int
    height: int
    duration: float  # seconds
    codec: str  # "h264", "vp9", "gif", ... or "images" for a frame folder


# ----------------------------------------------------------------------------- reading


def probe(path) -> VideoInfo:
    """Frame count, rate, size and codec of a video file or a folder of image frames, without decoding it."""
    path = Path(path)
    if path.is_dir():
        images = _list_images(path)
        try:
            with Image.open(images[0]) as image:
                width, height = image.size
        except (OSError, ValueError) as err:
            raise VideoError(f"{images[0]}: not a readable image (frame 0 of {path}); re-save it or remove it") from err
        return VideoInfo(str(path), len(images), DEFAULT_FPS, width, height, len(images) / DEFAULT_FPS, "images")

    container, stream = _open_video(path)
    with container:
        fps = _stream_fps(stream)
        frames = stream.frames or _count_frames(path, container, stream)
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = frames / fps
        codec = stream.codec_context
        return VideoInfo(str(path), frames, fps, codec.width, codec.height, duration, codec.name)


def iter_frames(path, size: int | None = None, fps: float | None = None) -> Iterator[np.ndarray]:
    """Stream decoded RGB frames, uint8 (H, W, 3), from a video file or a folder of image frames.

    size: resize so the shorter side is `size` (AREA filter), then centre-crop to (size, size).
    fps: resample by timestamp: output frame k is the latest source frame shown at time k / fps,
    so frames are dropped or repeated; the clip keeps its duration.
    """
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    container = None
    if path.is_dir():
        source_fps, timed_frames = DEFAULT_FPS, _folder_frames(path, size)
    else:
        container, stream = _open_video(path)
        source_fps, timed_frames = _stream_fps(stream), _video_frames(path, container, stream, size)
    try:
        if fps is None or math.isclose(fps, source_fps, rel_tol=1e-3):
            for _, frame in timed_frames:
                yield frame
        else:
            yield from _resample(timed_frames, source_fps, fps)
    finally:
        timed_frames.close()
        if container is not None:
            container.close()  # also when the caller stops early: read_video does


def read_video(path, start: int = 0, num_frames: int | None = None, size: int | None = None, fps: float | None = None) -> np.ndarray:
    """uint8 (T, H, W, 3): frames [start, start + num_frames) of iter_frames(path, size, fps).

    num_frames=None reads to the end. Too few frames for the request is a VideoError.
    """
    if start < 0 or (num_frames is not None and num_frames < 1):
        raise ValueError(f"need start >= 0 and num_frames >= 1, got start={start}, num_frames={num_frames}")
    stop = None if num_frames is None else start + num_frames
    frame_iter = iter_frames(path, size=size, fps=fps)
    try:
        frames = list(itertools.islice(frame_iter, start, stop))  # stops decoding once enough are read
    finally:
        frame_iter.close()
    if not frames or (num_frames is not None and len(frames) < num_frames):
        at_fps = "" if fps is None else f" at {fps:g} fps"
        wanted = f"{num_frames} frames" if num_frames is not None else "frames"
        raise VideoError(
            f"{path}: only {len(frames)} frames from frame {start} on{at_fps}, asked for {wanted}; ask for fewer frames or remove the file"
        )
    return np.stack(frames)


def _open_video(path: Path):
    """(container, first video stream) of a video file, or a VideoError that says what is wrong with it."""
    if path.is_symlink() and not path.exists():
        raise VideoError(f"{path}: a broken symbolic link or a symlink loop; fix or remove the link")
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder; check the path")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied; make it readable (chmod u+r) or remove it")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes); copy it again or remove it")
    try:
        # metadata_errors="replace": a title in a stray encoding must not make a good video unreadable
        container = av.open(str(path), metadata_errors="replace")
    except (av.FFmpegError, OSError, UnicodeError) as err:
        if isinstance(err, PermissionError):
            raise VideoError(f"{path}: permission denied; make it readable (chmod u+r) or remove it") from err
        raise VideoError(f"{path}: not a readable video ({_reason(err)}); re-encode it with ffmpeg or remove it") from err
    # cover art in music files shows up as a one-picture "video" stream; it is not a video
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        found = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams) or "none"
        container.close()
        raise VideoError(f"{path}: no video stream (streams: {found}); use a file that has video or remove it")
    return container, streams[0]


def _stream_fps(stream) -> float:
    # GIF delays are whole centiseconds, so 8 fps is stored as 13, 12, 13, ... and the measured
    # average is off; FFmpeg's guessed (r_frame_rate) recovers the intended rate there.
    if stream.codec_context.name == "gif":
        rates = (stream.guessed_rate, stream.average_rate, stream.base_rate)
    else:
        rates = (stream.average_rate, stream.guessed_rate, stream.base_rate)
    return next((float(rate) for rate in rates if rate), DEFAULT_FPS)


def _count_frames(path: Path, container, stream) -> int:
    """Frames of a stream whose header does not say (webm, some avi): count packets, no decoding."""
    try:
        count = sum(1 for packet in container.demux(stream) if packet.size > 0)
        if count == 0:  # a container that hands out no per-frame packets: decode as a last resort
            container.seek(0)
            count = sum(1 for _ in container.decode(stream))
    except av.FFmpegError as err:
        raise VideoError(f"{path}: cannot count frames ({_reason(err)}); re-encode it with ffmpeg or remove it") from err
    return count


def _video_frames(path: Path, container, stream, size: int | None):
    """(time in seconds, RGB frame) for each decoded frame of a video stream."""
    fps = _stream_fps(stream)
    reformatter = VideoReformatter()  # one scaler for the whole stream; frame.reformat would build one per frame
    index = 0
    try:
        for frame in container.decode(stream):
            time = frame.time if frame.time is not None else index / fps
            yield time, _to_rgb(reformatter, frame, size)
            index += 1
    except av.FFmpegError as err:
        raise VideoError(
            f"{path}: decoding failed at frame {index} ({_reason(err)}); the file may be truncated, re-encode it with ffmpeg or remove it"
        ) from err


def _folder_frames(folder: Path, size: int | None):
    """(time in seconds, RGB frame) for each image of a frame folder, at DEFAULT_FPS."""
    images = _list_images(folder)
    reformatter = VideoReformatter()
    first_shape = None
    for index, image_path in enumerate(images):
        try:
            with Image.open(image_path) as image:
                rgb = np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
            raise VideoError(f"{image_path}: not a readable image (frame {index} of {folder}); re-save it or remove it") from err
        # Frames of one video share one size: a folder mixing sizes holds frames of different videos
        # (checked before resizing, which would hide it).
        first_shape = first_shape or rgb.shape
        if rgb.shape != first_shape:
            raise VideoError(
                f"{image_path}: image is {rgb.shape[1]}x{rgb.shape[0]} but frame 0 of {folder} is "
                f"{first_shape[1]}x{first_shape[0]}; the frames of one video must have one size: fix or remove them"
            )
        if size is not None:
            rgb = _to_rgb(reformatter, av.VideoFrame.from_ndarray(rgb, format="rgb24"), size)
        yield index / DEFAULT_FPS, rgb


def _to_rgb(reformatter: VideoReformatter, frame, size: int | None) -> np.ndarray:
    """Convert (and shrink, in the same libswscale pass) to rgb24, then centre-crop to size x size."""
    if size is None:
        return reformatter.reformat(frame, format="rgb24").to_ndarray()
    scale = size / min(frame.width, frame.height)
    width, height = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
    rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation=Interpolation.AREA).to_ndarray()
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def _resample(timed_frames, source_fps: float, fps: float):
    """Output frame k is the latest source frame with time <= k / fps, times counted from the first frame."""
    eps = 1e-6  # timestamps are rounded to the stream's time base
    k, count, previous, start = 0, 0, None, None
    for time, frame in timed_frames:
        start = time if start is None else start
        while previous is not None and k / fps < time - start - eps:
            yield previous
            k += 1
        previous, count = frame, count + 1
    # The clip lasts count / source_fps (the last frame is shown for one frame interval), so
    # 20 frames at 8 fps give exactly 40 at 16 fps even when a gif stores delays of 13, 12, ... cs.
    while previous is not None and k / fps < count / source_fps - eps:
        yield previous
        k += 1


def _list_images(folder: Path) -> list[Path]:
    """Image files of a frame folder in natural order: frame_2 before frame_10."""
    images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    if not images:
        raise VideoError(f"{folder}: folder has no images ({', '.join(IMAGE_SUFFIXES)}); add frames or remove it")
    return sorted(images, key=lambda p: [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", p.name)])


def _reason(err: Exception) -> str:
    """FFmpeg's own words for an error, without errno and path: "invalid data found when processing input"."""
    reason = getattr(err, "strerror", None) or str(err)
    return reason[:1].lower() + reason[1:]


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


# ----------------------------------------------------------------------------- model layout
# torch is imported here, where tensors are made, not with the module: the library's commands decode
# and hash video files without loading torch (seconds of start-up).


def to_model(clips) -> torch.Tensor:
    """uint8 (B, T, H, W, C), numpy or torch, -> float32 (B, C, T, H, W) in [-1, 1], on the input's device.

    Move a uint8 batch to the GPU first and convert there: it is 4x less to copy.
    """
    import torch

    if isinstance(clips, np.ndarray):
        # torch warns on read-only arrays (memmaps); a uint8 copy is cheap next to the float result
        clips = torch.from_numpy(clips if clips.flags.writeable else clips.copy())
    if clips.dtype != torch.uint8 or clips.ndim != 5:
        raise ValueError(f"expected uint8 clips (B, T, H, W, C), got {clips.dtype} {tuple(clips.shape)}")
    videos = clips.permute(0, 4, 1, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    return videos.div_(127.5).sub_(1.0)


def to_uint8(videos: torch.Tensor) -> np.ndarray:
    """float (B, C, T, H, W) in [-1, 1] (clamped) -> uint8 numpy (B, T, H, W, C); inverts to_model exactly."""
    import torch

    if videos.ndim != 5:
        raise ValueError(f"expected videos (B, C, T, H, W), got shape {tuple(videos.shape)}")
    levels = videos.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    return levels.permute(0, 2, 3, 4, 1).contiguous().cpu().numpy()
