"""Conditional models learn their condition: trained on `shapes` clips, they generate what is asked.

The data are builtin:shapes clips (one coloured shape sliding over a dark background, with its
caption), filed the way a user files videos: one sub-folder per colour (so the folder name is the
class label) and captions.json beside them. Colour is the property a small CPU-trained model picks
up first and can be read off a clip without a learned classifier: the brightness-weighted mean
colour of a clip, compared with the four known shape colours. A model that ignores its condition
gets the asked colour about a quarter of the time (chance); these runs must do far better.
"""

import json

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config
from vidgan.data.builtin import SHAPE_BACKGROUND, SHAPE_COLORS, shapes
from vidgan.data.prepare import PrepareSettings, prepare
from vidgan.pipeline import VideoPipeline
from vidgan.training.loop import train

pytestmark = pytest.mark.slow
STEPS = 1200


@pytest.fixture(scope="module")
def colour_folders(tmp_path_factory):
    """600 shapes clips of 8x16x16 as png-frame folders under red/, green/, blue/, yellow/, with captions."""
    root = tmp_path_factory.mktemp("shapes")
    src, captions = root / "videos", {}
    for i, (clip, meta) in enumerate(shapes(n=600, frames=8, size=16, seed=0).clips):
        folder = src / meta["color"] / f"clip{i:04d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(clip):
            Image.fromarray(frame).save(folder / f"{t:02d}.png")
        captions[f"{meta['color']}/clip{i:04d}"] = meta["caption"]
    (src / "captions.json").write_text(json.dumps(captions))
    prepare(str(src), root / "data", PrepareSettings(size=16, frames=8), progress=False, log=lambda s: None)
    return root / "data"


def colour_of(clips: np.ndarray, colours: list[str]) -> np.ndarray:
    """Index into `colours` of each uint8 (N, T, H, W, 3) clip's dominant shape colour."""
    x = clips.astype(np.float64) - np.array(SHAPE_BACKGROUND, np.float64)
    weight = np.clip(x.max(axis=-1, keepdims=True), 0, None)  # bright pixels count most
    mean = (x * weight).sum(axis=(1, 2, 3)) / (weight.sum(axis=(1, 2, 3)) + 1e-6)
    palette = np.array([SHAPE_COLORS[c] for c in colours], np.float64) - np.array(SHAPE_BACKGROUND, np.float64)
    cosine = (mean / (np.linalg.norm(mean, axis=1, keepdims=True) + 1e-6)) @ (palette / np.linalg.norm(palette, axis=1, keepdims=True)).T
    return cosine.argmax(axis=1)


def asked_vs_got(pipe: VideoPipeline, colours: list[str], **per_colour) -> np.ndarray:
    """P[k, j]: share of 64 clips asked for colour k that came out colour j."""
    table = np.zeros((len(colours), len(colours)))
    for k, colour in enumerate(colours):
        clips = pipe(n=64, seed=1, **{key: make(k, colour) for key, make in per_colour.items()})
        table[k] = np.bincount(colour_of(clips, colours), minlength=len(colours)) / len(clips)
    return table


def test_the_colour_read_out_is_right_on_real_clips(colour_folders):
    from vidgan.data.clips import ClipDataset

    data = ClipDataset(colour_folders)
    clips, labels = data.get_batch(range(len(data)))
    assert (colour_of(clips.numpy(), data.classes) == labels.numpy()).mean() == 1.0


def test_class_conditional_model_generates_the_asked_class(colour_folders, tmp_path):
    cfg = tiny_config(colour_folders, **{"model.condition": "class", "train.steps": STEPS, "train.log_every": 100})
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    pipe = VideoPipeline.from_pretrained(tmp_path / "run")
    colours = pipe.classes
    table = asked_vs_got(pipe, colours, label=lambda k, c: k)
    hit_rate = table.diagonal().mean()
    # dependence: how much more often colour k comes out when asked than when another is asked
    dependence = np.mean([table[k, k] - np.delete(table[:, k], k).mean() for k in range(len(colours))])
    assert hit_rate >= 0.6 and dependence >= 0.4, f"asked (rows) vs generated (columns) {colours}:\n{table.round(2)}"
    # classes by their folder names
    assert colours == ["blue", "green", "red", "yellow"]
    assert np.array_equal(pipe(n=2, seed=0, label="red"), pipe(n=2, seed=0, label=2))
    with pytest.raises(ValueError, match="classes are blue, green, red, yellow"):
        pipe(n=1, label="purple")


def test_text_conditional_model_follows_the_caption(colour_folders, tmp_path):
    cfg = tiny_config(colour_folders, **{"model.condition": "text", "train.steps": STEPS, "train.log_every": 100})
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    pipe = VideoPipeline.from_pretrained(tmp_path / "run")
    colours = sorted(SHAPE_COLORS)
    # Sentences with a shape and motion the caption set also pairs with other colours: only the colour word differs.
    table = asked_vs_got(pipe, colours, text=lambda k, c: f"a {c} square moving right slowly")
    hit_rate = table.diagonal().mean()
    dependence = np.mean([table[k, k] - np.delete(table[:, k], k).mean() for k in range(len(colours))])
    assert hit_rate >= 0.6 and dependence >= 0.4, f"asked (rows) vs generated (columns) {colours}:\n{table.round(2)}"


def test_class_conditional_two_stage_model_generates_the_asked_class(colour_folders, tmp_path):
    """VQ-VAE (2x2x2 tokens, so a 16 px shape keeps its colour) then a class-conditional prior."""
    vq = {"vq.downsample": [2, 2, 2], "train.log_every": 100}
    train(
        tiny_config(colour_folders, **{"model.name": "vqvae", "train.steps": 600, **vq}),
        tmp_path / "vq",
        progress=False,
        log=lambda s: None,
    )
    cfg = tiny_config(
        colour_folders,
        **{"model.name": "videogpt", "model.condition": "class", "vq.vqvae_run": str(tmp_path / "vq"), "train.steps": 1000, **vq},
    )
    train(cfg, tmp_path / "prior", progress=False, log=lambda s: None)
    pipe = VideoPipeline.from_pretrained(tmp_path / "prior")
    assert pipe.classes == ["blue", "green", "red", "yellow"]
    table = asked_vs_got(pipe, pipe.classes, label=lambda k, c: k)
    hit_rate = table.diagonal().mean()
    dependence = np.mean([table[k, k] - np.delete(table[:, k], k).mean() for k in range(len(pipe.classes))])
    assert hit_rate >= 0.6 and dependence >= 0.4, f"asked (rows) vs generated (columns) {pipe.classes}:\n{table.round(2)}"
