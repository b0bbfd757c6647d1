"""The two-stage generator end to end: train the VQ-VAE, tokenize, train the prior, then the GAN surfaces
(pipeline, generate, evaluate, library) on the prior's run, and exact resume of both stages."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import tiny_config, torch_threads
from vidgan.cli import app
from vidgan.pipeline import VideoPipeline
from vidgan.run import Run
from vidgan.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
QUIET = {"progress": False, "log": lambda s: None}


@pytest.fixture(scope="module")
def vq_run(mnist16, tmp_path_factory):
    run = tmp_path_factory.mktemp("two_stage") / "vq"
    with torch_threads(1):
        train(tiny_config(mnist16, **{"model.name": "vqvae", "train.steps": 30}), run, **QUIET)
    return run


def test_tokenize_writes_the_token_grids(vq_run, mnist16, tmp_path):
    from vidgan.data.clips import ClipDataset
    from vidgan.data.video_io import to_model
    from vidgan.training.two_stage import load_vqvae

    result = runner.invoke(app, ["tokenize", str(vq_run), str(mnist16), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "wrote 32 token grids 4x4x4" in result.output
    tokens = np.load(vq_run / "tokens" / "tokens.npy", allow_pickle=False)
    info = json.loads((vq_run / "tokens" / "tokens.json").read_text())
    assert tokens.dtype == np.uint16 and tokens.shape == (32, 4, 4, 4)
    assert info["vqvae_step"] == 30 and info["num_clips"] == 32 and info["data"] == str(mnist16.resolve())
    model, _, _ = load_vqvae(vq_run)
    x = to_model(ClipDataset(mnist16).get_batch(range(32))[0])
    assert np.array_equal(tokens, model.encode(x).numpy())
    # --out elsewhere; a GAN run or a missing run are one-line errors
    assert runner.invoke(app, ["tokenize", str(vq_run), str(mnist16), "--out", str(tmp_path / "tok"), "--no-progress"]).exit_code == 0
    assert (tmp_path / "tok" / "tokens.npy").is_file()
    bad = runner.invoke(app, ["tokenize", str(tmp_path / "nothing"), str(mnist16)])
    assert bad.exit_code == 1 and bad.output.startswith("error:") and "no config.json" in bad.output


def test_prior_run_works_like_a_gan_run(vq_run, mnist16, tmp_path):
    from vidgan.library.catalog import Library
    from vidgan.library.queries import ClipQuery, find_clips
    from vidgan.metrics.evaluate import EvalOptions, evaluate

    moved_vq = tmp_path / "vq"
    shutil.copytree(vq_run, moved_vq)
    prior = tmp_path / "prior"
    result = runner.invoke(
        app,
        [
            "train",
            str(mnist16),
            "--model",
            "videogpt",
            "--vqvae",
            str(moved_vq),
            "--config",
            "tiny",
            "--steps",
            "12",
            "--out",
            str(prior),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "step 12, loss" in result.output
    cfg = json.loads((prior / "config.json").read_text())
    assert cfg["model"]["name"] == "videogpt" and cfg["vq"]["vqvae_run"] == str(moved_vq.resolve()) and cfg["vq"]["vqvae_step"] == 30
    assert (prior / "samples").is_dir() and json.loads((prior / "log.jsonl").read_text().splitlines()[-1])["step"] == 12
    shutil.rmtree(moved_vq)  # the prior's checkpoint carries the VQ-VAE: nothing breaks when stage 1 goes away

    pipe = VideoPipeline.from_pretrained(prior)
    clips = pipe(n=3, seed=5)
    assert clips.shape == (3, 8, 16, 16, 1) and clips.dtype == np.uint8
    assert np.array_equal(clips, pipe(n=3, seed=5)) and not np.array_equal(clips[0], clips[1])
    assert np.array_equal(pipe(n=1, seed=5), clips[:1])  # clip i depends on its own noise row only
    assert pipe(n=1, seed=0, frames=16).shape == (1, 16, 16, 16, 1)  # sliding window past the trained length

    out = tmp_path / "gen"
    result = runner.invoke(
        app,
        ["generate", str(prior), "--out", str(out), "--n", "3", "--seed", "5", "--format", "png", "--to-library", str(tmp_path / "lib")],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 3 clips" in result.output and "filed 3 clips" in result.output
    assert json.loads((out / "generated.json").read_text())["model"] == "videogpt"
    with Library.open(tmp_path / "lib") as lib, lib.session() as s:
        total, filed = find_clips(lib, s, ClipQuery(sort="id"))
        assert total == 3 and filed[0].provenance.model == "videogpt"

    # token sampling settings per call: recorded, replayed by the library, restored afterwards
    result = runner.invoke(
        app,
        [
            "generate",
            str(prior),
            "--out",
            str(tmp_path / "gen_t"),
            "--n",
            "2",
            "--seed",
            "5",
            "--format",
            "png",
            "--temperature",
            "0.5",
            "--top-k",
            "4",
            "--to-library",
            str(tmp_path / "lib"),
        ],
    )
    assert result.exit_code == 0, result.output
    cool = pipe(n=2, seed=5, temperature=0.5, top_k=4)
    assert not np.array_equal(cool, clips[:2]) and np.array_equal(pipe(n=2, seed=5), clips[:2])
    result = runner.invoke(app, ["library", "regenerate", str(tmp_path / "lib"), "5"])
    assert result.exit_code == 0 and "generator output identical" in result.output, result.output
    with pytest.raises(ValueError, match="temperature must be > 0"):
        pipe(n=1, temperature=0.0)

    run_eval = evaluate(
        prior, mnist16, EvalOptions(metrics="fd_effnet", n=6, effnet_size=32, progress=False), log=lambda s: None, report=False
    )
    assert np.isfinite(run_eval.records[0]["value"]) and run_eval.records[0]["value"] > 0

    # a VQ-VAE run alone generates nothing: said in one line
    result = runner.invoke(app, ["generate", str(vq_run), "--out", str(tmp_path / "g2")])
    assert result.exit_code == 1 and "--model videogpt --vqvae" in result.output
    result = runner.invoke(app, ["train", str(mnist16), "--model", "videogpt", "--config", "tiny", "--out", str(tmp_path / "p2")])
    assert result.exit_code == 1 and "pass --vqvae RUN" in result.output


def _weights(run, name):
    return load_file(str(Run(run).latest() / f"{name}.safetensors"))


@pytest.mark.parametrize("stage", ["vqvae", "vqvae-adversarial", "videogpt"])
def test_resume_continues_exactly(stage, vq_run, mnist16, tmp_path):
    extra = {"model.name": stage.split("-")[0], "train.checkpoint_every": 2}
    if stage == "videogpt":
        extra["vq.vqvae_run"] = str(vq_run)
    if stage == "vqvae-adversarial":
        extra["vq.adversarial"] = 0.1
    stage = extra["model.name"]
    name = "vqvae" if stage == "vqvae" else "generator_ema"
    train(tiny_config(mnist16, **extra, **{"train.steps": 4}), tmp_path / "whole", **QUIET)
    train(tiny_config(mnist16, **extra, **{"train.steps": 2}), tmp_path / "split", **QUIET)
    train(tiny_config(mnist16, **extra, **{"train.steps": 4}), tmp_path / "split", resume=True, **QUIET)
    a, b = _weights(tmp_path / "whole", name), _weights(tmp_path / "split", name)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if stage == "vqvae":
        assert int(a["codebook.ema_updates"]) == 4


def test_first_frame_prior_animates_the_given_frame(vq_run, mnist16, tmp_path):
    train(
        tiny_config(mnist16, **{"model.name": "videogpt", "model.condition": "first-frame", "vq.vqvae_run": str(vq_run), "train.steps": 3}),
        tmp_path / "ff",
        **QUIET,
    )
    pipe = VideoPipeline.from_pretrained(tmp_path / "ff")
    frame_a = np.zeros((16, 16, 1), np.uint8)
    frame_b = np.full((16, 16, 1), 255, np.uint8)
    a, b = pipe(n=2, seed=0, first_frame=frame_a), pipe(n=2, seed=0, first_frame=frame_b)
    assert a.shape == (2, 8, 16, 16, 1) and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="first_frame"):
        pipe(n=1)


def test_class_prior_takes_its_labels(vq_run, mnist16, tmp_path):
    train(
        tiny_config(mnist16, **{"model.name": "videogpt", "model.condition": "class", "vq.vqvae_run": str(vq_run), "train.steps": 3}),
        tmp_path / "cls",
        **QUIET,
    )
    pipe = VideoPipeline.from_pretrained(tmp_path / "cls")
    assert pipe.classes == [str(i) for i in range(10)]
    a, b = pipe(n=2, seed=0, label=3), pipe(n=2, seed=0, label=5)
    assert a.shape == (2, 8, 16, 16, 1) and not np.array_equal(a, b)
    assert np.array_equal(a, pipe(n=2, seed=0, label="3"))


def test_vqvae_patch_adversarial_term(mnist16, tmp_path):
    """The critic starts at vq.adversarial_start, learns to tell clips from reconstructions, and its
    term reaches the VQ-VAE (whose weights then differ from a run without it)."""
    from vidgan.run import RunDirError

    base = {"model.name": "vqvae", "train.steps": 40, "vq.adversarial_width": 8}
    train(tiny_config(mnist16, **base, **{"vq.adversarial": 0.5, "vq.adversarial_start": 10}), tmp_path / "adv", **QUIET)
    train(tiny_config(mnist16, **base, **{"vq.adversarial": 0.5, "vq.adversarial_start": 1000}), tmp_path / "never", **QUIET)
    train(tiny_config(mnist16, **{**base, "train.steps": 1}), tmp_path / "plain", **QUIET)  # only resumed (refused) below
    log = Run(tmp_path / "adv").read_log()
    assert all("adv_d" not in r for r in log if r["step"] <= 10) and all("adv_d" in r for r in log if r["step"] > 10)
    late = [r for r in log if r["step"] > 30]
    assert np.mean([r["critic_real"] - r["critic_fake"] for r in late]) > 0  # it tells real clips from reconstructions
    assert np.mean([r["adv_d"] for r in late]) < 2.0  # below the hinge loss of a critic that cannot tell (2)
    assert "critic.safetensors" in {p.name for p in Run(tmp_path / "adv").latest().iterdir()}
    # same critic built in both, used in one: the term is what changes the VQ-VAE
    a, b = _weights(tmp_path / "adv", "vqvae"), _weights(tmp_path / "never", "vqvae")
    assert not torch.equal(a["decoder.net.0.weight"], b["decoder.net.0.weight"])
    assert all("adv_d" not in r for r in Run(tmp_path / "never").read_log())
    with pytest.raises(RunDirError, match="model/vq settings differ"):
        train(tiny_config(mnist16, **{**base, "train.steps": 50, "vq.adversarial": 0.5}), tmp_path / "plain", resume=True, **QUIET)
    with pytest.raises(ValueError, match="vq.adversarial: Input should be greater than or equal to 0"):
        train(tiny_config(mnist16, **{**base, "vq.adversarial": -1.0}), tmp_path / "neg", **QUIET)


def test_prior_scores_itself_during_training(vq_run, mnist16, tmp_path):
    evals = {"train.eval_every": 2, "train.eval_n": 8, "train.eval_image_size": 32, "train.eval_metrics": "fd_effnet,diversity"}
    printed = []
    train(
        tiny_config(mnist16, **{"model.name": "videogpt", "vq.vqvae_run": str(vq_run), "train.steps": 4, **evals}),
        tmp_path / "p",
        progress=False,
        log=printed.append,
    )
    lines = [json.loads(line) for line in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["metric"]) for r in lines] == [
        (step, name) for step in (2, 4) for name in ("fd_effnet8_8f_32px", "diversity8_8f_32px", "diversity8_8f_32px_near_duplicates")
    ]
    assert all(np.isfinite(r["value"]) and r["protocol"]["fake"]["model"] == "videogpt" for r in lines)
    assert any(p.startswith("step 4: fd_effnet8_8f_32px") for p in printed)
    with pytest.raises(ValueError, match="give it to the prior"):
        train(tiny_config(mnist16, **{"model.name": "vqvae", "train.steps": 2, **evals}), tmp_path / "v", **QUIET)
