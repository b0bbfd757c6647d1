"""Read and probe videos; convert clips between their two layouts. Writing is in video_write.py;
the two are the only places in vidgan that touch codecs.

Two layouts, used everywhere in vidgan:

- at the edges and on disk a video is a uint8 numpy array (T, H, W, C), C = 1 or 3,
  values 0..255 (T = time, frames; C = channels, RGB or gray);
- inside models a batch of videos is a float tensor (B, C, T, H, W) with values in [-1, 1].

`to_model` and `to_uint8` are the only conversions between the two. Everything else in
this file returns the uint8 layout; readers always return RGB (C = 3).

Resizing (iter_frames/read_video with `size`) uses libswscale's AREA filter, for video
files and frame folders alike, so a clip and its extracted frames give the same pixels.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
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

# A folder of frames carries no timing; it plays at this rate. Also used for the rare
# stream that declares no rate at all.
DEFAULT_FPS = 25.0


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
