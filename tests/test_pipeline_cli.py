"""Generation API and the `vidgan` command line, end to end on tiny data."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers import tiny_config, torch_threads
from vidgan.cli import app
from vidgan.data.video_io import probe, read_video
from vidgan.pipeline import VideoPipeline
from vidgan.presets import resolve_config
from vidgan.run import CheckpointError, Run
from vidgan.training.loop import train

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(mnist_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    with torch_threads(1):
        train(tiny_config(mnist_data, **{"train.steps": 20, "train.checkpoint_every": 10}), run, progress=False, log=lambda s: None)
    return run


def test_pipeline_is_reproducible_by_seed(tiny_run, tmp_path):
    pipe = VideoPipeline.from_pretrained(tiny_run)
    a, b, c = pipe(n=4, seed=0), pipe(n=4, seed=0, batch_size=3), pipe(n=4, seed=1)
    assert a.dtype == np.uint8 and a.shape == (4, 8, 32, 32, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert pipe.step == 20
    older = VideoPipeline.from_pretrained(tiny_run, step=10)
    assert older.step == 10 and not np.array_equal(older(n=4, seed=0), a)
    one_ckpt = VideoPipeline.from_pretrained(Run(tiny_run).checkpoint_dir(20))
    assert np.array_equal(one_ckpt(n=4, seed=0), a)
    saved = pipe.save_pretrained(tmp_path / "exported")
    assert np.array_equal(VideoPipeline.from_pretrained(saved)(n=4, seed=0), a)
    with pytest.raises(CheckpointError, match="no checkpoint for step 7"):
        VideoPipeline.from_pretrained(tiny_run, step=7)
    with pytest.raises(ValueError, match="videogan has no token sampling"):
        pipe(n=1, temperature=0.5)


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webm", "png"])
def test_generate_command_writes_every_format(tiny_run, tmp_path, fmt):
    out = tmp_path / fmt
    result = runner.invoke(app, ["generate", str(tiny_run), "--n", "3", "--seed", "5", "--out", str(out), "--format", fmt])
    assert result.exit_code == 0, result.output
    clip = out / ("clip_00001" if fmt == "png" else f"clip_00001.{fmt}")
    assert probe(clip).frames == 8
    grid = read_video(out / "grid.gif")
    assert grid.shape[0] == 8 and grid.shape[1] > 32 and grid.shape[2] > 64  # 2x2 tiles with padding
    manifest = json.loads((out / "generated.json").read_text())
    assert manifest["seed"] == 5 and manifest["step"] == 20 and len(manifest["clips"]) == 3
    if fmt == "png":  # lossless: the files hold exactly the pipeline's pixels
        want = VideoPipeline.from_pretrained(tiny_run)(n=3, seed=5)[1]
        assert np.array_equal(read_video(clip)[..., :1], want)


def test_cli_errors_are_one_line(tmp_path, mnist_data):
    cases = [
        (["train", str(tmp_path / "nodata"), "--out", str(tmp_path / "r")], "not a prepared dataset"),
        (["train", str(mnist_data), "--out", str(tmp_path / "r"), "--config", "huge"], "unknown config preset"),
        (["generate", str(tmp_path / "norun"), "--out", str(tmp_path / "o")], "no such run folder"),
        (["prepare", str(tmp_path / "missing"), str(tmp_path / "o")], "not a folder"),
        (["train", "--resume", "--out", str(tmp_path / "nothing")], "no run to resume"),
        (
            ["train", str(mnist_data), "--out", str(tmp_path / "r"), "--set", "train.lr_dd=1"],
            "train has no setting 'lr_dd'; it has batch_size",
        ),
        (["train", str(mnist_data), "--out", str(tmp_path / "r"), "--set", "lr_d=1"], "write SECTION.KEY=VALUE"),
        (["train", str(mnist_data), "--out", str(tmp_path / "r"), "--set", "optim.lr=1"], "no section 'optim'"),
        (["train", str(mnist_data), "--out", str(tmp_path / "r"), "--set", "train.steps=many"], "--set: train.steps:"),
        (["train", str(mnist_data), "--out", str(tmp_path / "r"), "--recipe", "faces"], "unknown recipe 'faces'; recipes: sprites"),
        (["train", str(mnist_data), "--out", str(tmp_path / "r"), "--recipe", "sprites", "--model", "videogan"], "is for --model sprites"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_train_and_resume_commands(mnist_data, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(mnist_data), "--config", "tiny", "--out", str(run), "--steps", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--resume", "--out", str(run), "--steps", "6", "--no-progress"])
    flags = runner.invoke(
        app,
        [
            "train",
            str(mnist_data),
            "--config",
            "tiny",
            "--out",
            str(tmp_path / "f"),
            "--steps",
            "2",
            "--loss",
            "hinge",
            "--penalty",
            "r1",
            "--aug",
            "translation",
            "--condition",
            "class",
            "--set",
            "train.lr_d=4e-4",
            "--set",
            "model.spectral_norm=true",
            "--no-progress",
        ],
    )
    assert flags.exit_code == 0, flags.output
    saved = json.loads((tmp_path / "f" / "config.json").read_text())
    assert (saved["loss"]["name"], saved["loss"]["penalty"], saved["loss"]["augment"], saved["model"]["condition"]) == (
        "hinge",
        "r1",
        "translation",
        "class",
    )
    assert (saved["train"]["lr_d"], saved["model"]["spectral_norm"]) == (4e-4, True)
    assert "vq" not in saved  # the two-stage settings are written into two-stage runs only
    assert saved["model"]["g_channels"] == 32 and saved["train"]["lr_g"] == 5e-4  # the rest stays the preset's
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "step 6" in result.output
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 6


def test_a_recipe_sets_its_kind_of_data_settings_and_options_still_win(mnist_data, tmp_path):
    from vidgan.presets import read_recipe

    args = ["train", str(mnist_data), "--config", "tiny", "--recipe", "sprites", "--steps", "1", "--no-progress"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--set", "loss.mode_seeking=0.5"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    recipe = read_recipe("sprites")
    for section in ("model", "loss", "train"):
        for key, value in recipe[section].items():
            if (section, key) != ("loss", "mode_seeking"):
                assert saved[section][key] == value, (section, key)
    assert saved["loss"]["mode_seeking"] == 0.5  # --set wins over the recipe
    assert saved["model"]["z_dim"] == resolve_config("tiny", model="sprites").model.z_dim  # the rest is the preset's
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--resume", "--set", "loss.mode_seeking=0.5"])
    assert again.exit_code == 0, again.output  # the same command resumed: it agrees with the run, so it is honoured
    other = runner.invoke(app, ["train", "--config", "small", "--resume", "--out", str(tmp_path / "r"), "--no-progress"])
    assert other.exit_code == 1 and "--config small gives another" in other.output and "a resumed run keeps its settings" in other.output


@pytest.mark.slow  # starts `vidgan demo`, which trains on a time budget
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "vidgan", "demo", "--out", str(out), "--budget", "8", "--clips", "64", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "grid.gif" in proc.stdout
    grid = read_video(out / "samples" / "grid.gif")
    assert grid.shape[0] == 16  # 16-frame clips
    assert len(list((out / "samples").glob("clip_*.mp4"))) == 16
    assert Run(out / "run").latest() is not None
    saved = json.loads((out / "run" / "config.json").read_text())  # Moving MNIST: the sprites recipe
    assert (saved["model"]["name"], saved["model"]["layers"], saved["model"]["layer_size"]) == ("sprites", 2, 0.5)
    assert (saved["model"]["d_channels"], saved["train"]["lr_g"]) == (32, 0.001)  # the recipe over the small preset


def test_truncation_and_interpolation(tiny_run, tmp_path):
    pipe = VideoPipeline.from_pretrained(tiny_run)
    z = pipe.noise(64, seed=3, truncation=0.5)
    assert z.abs().max() <= 0.5 and np.array_equal(z.numpy(), pipe.noise(64, seed=3, truncation=0.5).numpy())
    assert not np.array_equal(pipe(n=2, seed=3, truncation=0.5), pipe(n=2, seed=3))
    morph = pipe.interpolate(0, 1, steps=5)
    assert morph.shape[0] == 5
    assert np.abs(morph[0].astype(int) - pipe(n=1, seed=0)[0]).max() <= 1
    assert np.abs(morph[-1].astype(int) - pipe(n=1, seed=1)[0]).max() <= 1
    steps = [np.abs(morph[i + 1].astype(int) - morph[i]).mean() for i in range(4)]
    assert max(steps) < np.abs(morph[-1].astype(int) - morph[0]).mean()  # gradual, not a jump
    out = tmp_path / "morph"
    result = runner.invoke(app, ["generate", str(tiny_run), "--n", "4", "--interpolate", "0", "1", "--out", str(out), "--format", "gif"])
    assert result.exit_code == 0, result.output
    assert read_video(out / "interpolation.gif").shape[0] == 4 * 8


def test_mocogan_hold_content_or_motion_and_longer_clips(mnist_data, tmp_path):
    run = tmp_path / "moco"
    train(tiny_config(mnist_data, **{"train.steps": 10, "model.name": "mocogan"}), run, progress=False, log=lambda s: None)
    pipe = VideoPipeline.from_pretrained(run, ema=False)  # the raw G: the EMA of 10 steps is still flat
    z = pipe.noise(3, seed=0)
    held = pipe.hold(z, "content")
    content, motion = pipe.generator.split_z(held)
    assert torch.equal(content[1], content[0]) and not torch.equal(motion[1], motion[0])
    content, motion = pipe.generator.split_z(pipe.hold(z, "motion"))
    assert torch.equal(motion[2], motion[0]) and not torch.equal(content[2], content[0])
    same_subject = pipe(n=3, seed=0, hold="content")
    assert same_subject.shape == (3, 8, 32, 32, 1) and not np.array_equal(same_subject[0], same_subject[1])
    long = pipe(n=2, seed=0, frames=16)
    assert long.shape[1] == 16
    result = runner.invoke(
        app, ["generate", str(run), "--n", "2", "--hold", "motion", "--frames", "12", "--out", str(tmp_path / "g"), "--no-grid"]
    )
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "g" / "clip_00000.mp4").frames == 12
    with pytest.raises(ValueError, match="content' or 'motion"):
        pipe.hold(z, "both")


@pytest.mark.slow  # an end-to-end learning test: two runs of 40 steps
def test_two_stream_mask_prior_shrinks_the_mask(mnist_data, tmp_path):
    sizes = {}
    for weight in (0.0, 5.0):
        run = tmp_path / f"m{weight}"
        train(
            tiny_config(mnist_data, **{"train.steps": 40, "model.name": "videogan-2stream", "loss.mask_l1": weight}),
            run,
            progress=False,
            log=lambda s: None,
        )
        G = VideoPipeline.from_pretrained(run, ema=False).generator
        with torch.no_grad():
            sizes[weight] = G(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0)), extras=True)[1]["mask"].mean().item()
    assert sizes[5.0] < 0.8 * sizes[0.0], sizes
