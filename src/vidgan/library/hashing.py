"""Content hashes of clips: file sha256, uint8-frames sha256, perceptual hash, motion score."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PREVIEW_SIZE = 160  # longest side of the animated preview, pixels (never enlarged)
PREVIEW_FRAMES = 48  # at most this many frames in a preview (longer clips are subsampled)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rgb(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 frames (T, H, W, C) or (H, W, C) with C 1 or 3, got {frames.dtype} {frames.shape}")
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _frames_header(height: int, width: int) -> bytes:
    return b"vidgan-frames/1 %dx%dx3 uint8\n" % (height, width)


def frames_hash(frames: np.ndarray) -> str:
    """sha256 of uint8 frames (T, H, W, C) as RGB: gray clips hash as their 3-channel video, so a
    generator's output and the lossless file made from it have the same frames hash."""
    frames = np.ascontiguousarray(rgb(frames))
    digest = hashlib.sha256(_frames_header(*frames.shape[1:3]))
    digest.update(frames.tobytes())
    return digest.hexdigest()


def frame_dhash(frame: np.ndarray, size: int = 8, margin: float = 2.0) -> np.ndarray:
    """dHash of one RGB frame, horizontal and vertical (2 * size * size bits, as bools).

    The gray frame is box-averaged to (size+1) x size; a bit is set where a cell is brighter
    than its neighbour by more than `margin` levels. The margin keeps codec noise in flat areas
    (a black background decoding as 0, 1, 2) from flipping bits, which plain dHash (margin 0)
    does: re-encodes then look 10x further apart."""
    gray = Image.fromarray(rgb(frame)).convert("L")
    wide = np.asarray(gray.resize((size + 1, size), Image.BOX), dtype=np.float32)
    tall = np.asarray(gray.resize((size, size + 1), Image.BOX), dtype=np.float32)
    return np.concatenate([(wide[:, 1:] - wide[:, :-1] > margin).ravel(), (tall[1:] - tall[:-1] > margin).ravel()])


def perceptual_hash(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Mean of the per-frame dHash bits over the clip, quantised to uint8 (128 values, 0..255).

    The same clip re-encoded (mp4 -> webm/gif, same size) keeps nearly every bit in nearly every
    frame; different clips differ in where their edges are. Frame order does not count."""
    total, count = None, 0
    for frame in frames:
        bits = frame_dhash(frame).astype(np.float64)
        total = bits if total is None else total + bits
        count += 1
    if count == 0:
        raise ValueError("a clip needs at least one frame")
    return np.round(total / count * 255).astype(np.uint8)


def phash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference of two perceptual hashes (or of one against rows of many), in [0, 1]."""
    return np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean(axis=-1) / 255.0


def motion_score(previous: np.ndarray, frame: np.ndarray) -> float:
    return float(np.abs(frame.astype(np.int16) - previous.astype(np.int16)).mean() / 255.0)


MOTION_PROTOCOL = "mean |frame[t+1] - frame[t]| / 255 over the decoded uint8 RGB frames of this clip"


@dataclass
class Digest:
    """Everything ingest learns from one pass over a clip's decoded frames."""

    frames_sha256: str
    phash: np.ndarray
    frames: int
    width: int
    height: int
    motion: float
    poster: np.ndarray
    preview: list[np.ndarray]


def digest_frames(frames: Iterator[np.ndarray], expected: int) -> Digest:
    """One streaming pass (a long video never sits in memory): frames hash, perceptual hash,
    motion, the middle frame as poster and up to PREVIEW_FRAMES small frames for the preview."""
    digest, bits, count, motion, previous, poster, preview = None, None, 0, 0.0, None, None, []
    stride = max(1, math.ceil(expected / PREVIEW_FRAMES))
    for frame in frames:
        frame = rgb(frame)
        if digest is None:
            digest = hashlib.sha256(_frames_header(*frame.shape[:2]))
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(f"frame {count} is {frame.shape}, frame 0 was {shape}")
        digest.update(np.ascontiguousarray(frame).tobytes())
        b = frame_dhash(frame).astype(np.float64)
        bits = b if bits is None else bits + b
        if previous is not None:
            motion += motion_score(previous, frame)
        if count <= expected // 2 or poster is None:
            poster = frame
        if count % stride == 0 and len(preview) < PREVIEW_FRAMES:
            preview.append(_shrink(frame, PREVIEW_SIZE))
        previous, count = frame, count + 1
    if count == 0:
        raise ValueError("no frames")
    return Digest(
        digest.hexdigest(),
        np.round(bits / count * 255).astype(np.uint8),
        count,
        shape[1],
        shape[0],
        motion / max(1, count - 1),
        poster,
        preview,
    )


def _shrink(frame: np.ndarray, longest: int) -> np.ndarray:
    height, width = frame.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1:
        return frame
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BOX))
