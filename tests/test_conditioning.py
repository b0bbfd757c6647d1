"""Conditional training and sampling through the trainer and the pipeline; the diversity monitor."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers import tiny_config
from vidgan.cli import app
from vidgan.data.clips import ClipDataset
from vidgan.data.video_io import read_video
from vidgan.metrics.diversity import collapse_warning, diversity
from vidgan.pipeline import VideoPipeline
from vidgan.run import Run
from vidgan.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_class_conditional_run_samples_the_asked_class(mnist_data, tmp_path):
    run = tmp_path / "cls"
    train(tiny_config(mnist_data, **{"train.steps": 3, "model.condition": "class"}), run, progress=False, log=lambda s: None)
    pipe = VideoPipeline.from_pretrained(run)
    assert pipe.config.model.num_classes == 10
    a, b = pipe(n=2, seed=0, label=3), pipe(n=2, seed=0, label=7)
    assert not np.array_equal(a, b)  # same noise, another class: another clip
    assert np.array_equal(a, pipe(n=2, seed=0, label=[3, 3]))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        pipe(n=1, label=12)
    result = CliRunner().invoke(app, ["generate", str(run), "--n", "2", "--label", "4", "--out", str(tmp_path / "g"), "--no-grid"])
    assert result.exit_code == 0, result.output
    assert '"label": 4' in (tmp_path / "g" / "generated.json").read_text()


def test_image_to_video_starts_at_the_given_frame(mnist_data, tmp_path):
    run = tmp_path / "i2v"
    train(tiny_config(mnist_data, **{"train.steps": 3, "model.condition": "first-frame"}), run, progress=False, log=lambda s: None)
    frame = ClipDataset(mnist_data)[5][0][0].numpy()  # (32, 32, 1)
    clips = VideoPipeline.from_pretrained(run)(n=2, seed=1, first_frame=frame)
    assert np.array_equal(clips[0, 0], frame) and np.array_equal(clips[1, 0], frame)
    assert not np.array_equal(clips[0, 1], frame)
    image = tmp_path / "start.png"
    Image.fromarray(np.repeat(np.kron(frame[..., 0], np.ones((2, 2), np.uint8))[..., None], 3, -1)).save(image)  # 64x64 RGB
    out = tmp_path / "g"
    result = CliRunner().invoke(
        app, ["generate", str(run), "--n", "1", "--first-frame", str(image), "--out", str(out), "--format", "png", "--no-grid"]
    )
    assert result.exit_code == 0, result.output
    first = read_video(out / "clip_00000")[0, :, :, 0].astype(int)
    assert np.abs(first - frame[..., 0]).mean() < 3  # the image, resized back to 32x32
    with pytest.raises(ValueError, match="first frame"):
        VideoPipeline.from_pretrained(run)(n=1)


def test_unconditional_model_refuses_a_label(mnist_data, tmp_path):
    train(tiny_config(mnist_data, **{"train.steps": 1}), tmp_path / "u", progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="unconditional"):
        VideoPipeline.from_pretrained(tmp_path / "u")(n=1, label=1)


def test_diversity_flags_collapse():
    torch.manual_seed(0)
    varied = torch.rand(8, 1, 4, 16, 16) * 2 - 1
    collapsed = varied[:1].repeat(8, 1, 1, 1, 1) + 0.001 * torch.randn(8, 1, 4, 16, 16)
    real = diversity(varied)
    assert real.near_duplicates == 0 and collapse_warning(real, real.mean_distance) is None
    gen = diversity(collapsed, reference_distance=real.mean_distance)
    assert gen.near_duplicates == 1.0 and gen.mean_distance < 0.05 * real.mean_distance
    assert "mode collapse" in collapse_warning(gen, real.mean_distance)


def test_training_logs_diversity_and_warns_on_collapse(mnist_data, tmp_path, monkeypatch):
    import vidgan.training.gan as loop

    messages = []
    # A generator that ignores its noise is collapsed by construction: the monitor must say so.
    real_build = loop.build_model

    def collapsed_build(cfg):
        G, D = real_build(cfg)
        forward = G.forward
        G.forward = lambda z, cond=None, **kw: forward(torch.zeros_like(z), cond, **kw)
        return G, D

    monkeypatch.setattr(loop, "build_model", collapsed_build)
    train(
        tiny_config(mnist_data, **{"train.steps": 25, "train.warmup_collapse_steps": 0, "train.monitor_every": 5}),
        tmp_path / "c",
        progress=False,
        log=messages.append,
    )
    log = Run(tmp_path / "c").read_log()
    assert len(log) == 25  # every step is logged (log_every 1); the monitor runs on the first and every 5th
    assert [r["step"] for r in log if "diversity" in r and "near_duplicates" in r] == [1, 5, 10, 15, 20, 25]
    assert log[-1]["near_duplicates"] == 1.0
    warned = [m for m in messages if "mode collapse" in m]
    assert [m.split(":")[0] for m in warned] == ["step 1", "step 20"]  # when it starts, then every 4th reading


def test_conditional_run_on_a_dataset_smaller_than_the_sample_grid(tmp_path):
    """Fixed samples need one condition per noise vector even when the dataset has fewer clips."""
    from vidgan.data.prepare import PrepareSettings, prepare

    prepare("builtin:moving-mnist", tmp_path / "d", PrepareSettings(size=32, frames=8), n=5, seed=0, progress=False, log=lambda s: None)
    result = train(
        tiny_config(tmp_path / "d", **{"train.steps": 2, "model.condition": "first-frame"}),
        tmp_path / "r",
        progress=False,
        log=lambda s: None,
    )
    assert result.step == 2
    grid = read_video(tmp_path / "r" / "samples" / "step_000000002.gif")
    assert grid.shape[0] == 8
