"""Run folders written by earlier vidgan versions still load, generate the same clips and resume.

tests/fixtures/runs_v0 was written by vidgan 0.1.0 before the training loop was unified (commit
0de7102): a tiny VideoGAN run, a VQ-VAE run and a videogpt prior on it. tests/fixtures/runs_v1 was
written at commit 749c26e, the last version with one flat model config for every model: ctvgan
(per-frame), ctvgan with the `sprites` recipe (now the `sprites` model), class-conditional ctvgan,
tgan, mocogan and videogan-2stream. Each run was trained 8 steps on runs_v0/data with checkpoints at
steps 4 and 8; `<run>_clips_seed7.npy` holds what `VideoPipeline.from_pretrained(run)(n=2, seed=7)` gave.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import torch_threads
from vidgan.pipeline import VideoPipeline
from vidgan.run import Run, load_weights
from vidgan.training.loop import train

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "runs_v0" / "data"
GAN_NETWORKS = ["generator", "generator_ema", "discriminator"]
RUNS = {  # run folder -> the networks its checkpoints hold
    "runs_v0/gan": GAN_NETWORKS,
    "runs_v0/vq": ["vqvae"],
    "runs_v0/gpt": ["generator"],
    **{f"runs_v1/{name}": GAN_NETWORKS for name in ("ctvgan", "sprites", "class-ctvgan", "tgan", "mocogan", "videogan-2stream")},
}
SAMPLED = [run for run in RUNS if not run.endswith("/vq")]  # a VQ-VAE alone is not a generator


@pytest.mark.parametrize("run", SAMPLED)
def test_old_run_generates_the_same_clips(run):
    with torch_threads(2):  # as they were written
        clips = VideoPipeline.from_pretrained(FIXTURES / run)(n=2, seed=7)
    np.testing.assert_array_equal(clips, np.load(FIXTURES / f"{run}_clips_seed7.npy"))


BATCHNORM_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.mark.parametrize("run", list(RUNS))
def test_old_run_resumes_the_same_run(tmp_path, run):
    """Resumed from its step-4 checkpoint with today's code, the old run reaches the step-8 weights it
    reached in one go with the old code."""
    copy = tmp_path / Path(run).name
    shutil.copytree(FIXTURES / run, copy)
    shutil.rmtree(Run(copy).checkpoint_dir(8))
    cfg = Run(copy).config()
    cfg.data = str(DATA)
    with torch_threads(2):  # the threads the runs were written with: float sums in the same order
        result = train(cfg, copy, resume=True, progress=False, log=lambda s: None)
    assert result.step == 8
    for name in RUNS[run]:
        resumed, original = load_weights(Run(copy).checkpoint_dir(8), name), load_weights(Run(FIXTURES / run).checkpoint_dir(8), name)
        assert resumed.keys() == original.keys()
        for key in original:
            if name == "generator_ema" and key.rsplit(".", 1)[-1] in BATCHNORM_STATISTICS:
                continue  # recomputed for the EMA weights since (training.common.standing_statistics)
            torch.testing.assert_close(resumed[key], original[key], rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")
    assert [line["step"] for line in Run(copy).read_log()][-1] == 8
