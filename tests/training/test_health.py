"""Weight health and checkpoint fallback: nothing non-finite is saved or sampled, and a damaged
newest checkpoint is skipped (with a note), never deleted."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.helpers import tiny_config, torch_threads

from vidgan.cli import main
from vidgan.health import DivergenceWatch, weights_problem
from vidgan.pipeline import VideoPipeline
from vidgan.run import CheckpointError, Run, checkpoint_problem, generator_weights
from vidgan.training.common import NonFiniteLossError
from vidgan.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, mnist16):
    """A tiny VideoGAN run with checkpoints at steps 2, 4 and 6."""
    run = tmp_path_factory.mktemp("health") / "run"
    cfg = tiny_config(mnist16, **{"train.steps": 6, "train.checkpoint_every": 2, "train.keep_checkpoints": 5})
    with torch_threads(1):
        train(cfg, run, progress=False, log=lambda s: None)
    return run


def copy_run(saved_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(saved_run, run)
    return run


def test_weights_problem_names_the_tensor_and_what_is_wrong():
    good = {"generator": {"a": torch.ones(3), "steps": torch.tensor(5)}}
    assert weights_problem(good) is None
    assert weights_problem({"g": {"bn.running_var": torch.tensor([1.0, math.inf])}}) == "g: bn.running_var is inf"
    assert weights_problem({"g": {"w": torch.tensor([math.nan])}}) == "g: w is nan"
    assert "magnitude 1e+30" in weights_problem({"g": {"w": torch.tensor([1e30])}})


def test_divergence_watch_warns_once_when_a_loss_explodes():
    watch = DivergenceWatch(warmup=5)
    for step in range(5):
        assert watch(step, {"loss_d": -1.0 - 0.1 * step}) is None
    assert watch(5, {"loss_d": -50.0}) is None  # grows, but not by orders of magnitude
    warning = watch(6, {"loss_d": -4.8e22})
    assert "loss_d" in warning and "diverging" in warning and "lr" in warning
    assert watch(7, {"loss_d": -5e22}) is None  # once


def test_exploding_weights_stop_training_before_a_checkpoint(mnist16, tmp_path):
    """lr 1e9: the losses stay finite but the weights (and BatchNorm statistics) blow up; the run stops,
    saves nothing bad, and names the last good checkpoint."""
    run = tmp_path / "run"
    cfg = tiny_config(mnist16, **{"train.steps": 4, "train.checkpoint_every": 2})
    train(cfg, run, progress=False, log=lambda s: None)
    cfg = tiny_config(mnist16, **{"train.steps": 40, "train.checkpoint_every": 2, "train.log_every": 5, "train.lr_g": 1e9})
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, run, resume=True, progress=False, log=lambda s: None)
    message = str(err.value)
    assert "generator" in message and ("inf" in message or "magnitude" in message or "nan" in message)
    assert "step_000000004" in message  # the last good checkpoint
    for folder in Run(run).checkpoints():
        assert checkpoint_problem(folder) is None, folder  # nothing non-finite was written


def test_generate_skips_a_truncated_newest_checkpoint(saved_run, tmp_path, capsys):
    run = copy_run(saved_run, tmp_path)
    newest = Run(run).checkpoint_dir(6) / "generator_ema.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    found = generator_weights(run, log=print)
    assert found.step == 4
    assert "skipping checkpoint step_000000006" in capsys.readouterr().out
    assert main(["generate", str(run), "--out", str(tmp_path / "o"), "--n", "2", "--no-grid"]) == 0
    err = capsys.readouterr().err
    assert "skipping checkpoint step_000000006" in err and "damaged" in err
    assert json.loads((tmp_path / "o" / "generated.json").read_text())["step"] == 4
    assert newest.exists()  # generate never deletes anything


def test_non_finite_weights_are_refused_by_generate(saved_run, tmp_path, capsys):
    run = copy_run(saved_run, tmp_path)
    folder = Run(run).checkpoint_dir(6)
    weights = load_file(str(folder / "generator_ema.safetensors"))
    key = next(k for k in weights if k.endswith("running_var"))
    weights[key][0] = math.inf
    save_file(weights, str(folder / "generator_ema.safetensors"))
    assert "non-finite" in checkpoint_problem(folder)
    assert generator_weights(run, log=lambda s: None).step == 4  # newest sound one
    with pytest.raises(CheckpointError, match="non-finite.*newest sound one is step 4"):
        VideoPipeline.from_pretrained(run, step=6)
    code = main(["generate", str(folder), "--out", str(tmp_path / "o")])
    assert code == 1 and "non-finite" in capsys.readouterr().err


def test_resume_falls_back_past_damaged_checkpoints_and_keeps_them(saved_run, mnist16, tmp_path):
    run = copy_run(saved_run, tmp_path)
    r = Run(run)
    (r.checkpoint_dir(6) / "generator.safetensors").write_bytes(b"\x00" * 10)
    (r.checkpoint_dir(4) / "state.json").write_text("{not json")
    notes = []
    cfg = tiny_config(mnist16, **{"train.steps": 8, "train.checkpoint_every": 2, "train.keep_checkpoints": 5})
    result = train(cfg, run, resume=True, progress=False, log=notes.append)
    assert result.step == 8
    text = "\n".join(notes)
    assert "skipping checkpoint step_000000006" in text and "skipping checkpoint step_000000004" in text
    assert "state.json: not valid JSON" in text and "resuming" in text and "from step 2" in text
    rejected = sorted(p.name for p in (run / "checkpoints").glob("rejected-*"))
    assert rejected == ["rejected-step_000000004", "rejected-step_000000006"]  # set aside, not deleted
    assert [p.name for p in r.checkpoints()][-1] == "step_000000008"
    assert all(checkpoint_problem(p) is None for p in r.checkpoints())


def test_resume_from_the_cli_with_a_truncated_newest_checkpoint(saved_run, tmp_path, capsys):
    run = copy_run(saved_run, tmp_path)
    newest = Run(run).checkpoint_dir(6) / "generator.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert main(["train", "--resume", "--out", str(run), "--steps", "7", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "skipping checkpoint step_000000006" in out.out + out.err
    assert Run(run).latest().name == "step_000000007"


def test_evaluate_uses_the_newest_sound_checkpoint(saved_run, tmp_path):
    from vidgan.metrics.sources import open_source

    run = copy_run(saved_run, tmp_path)
    (Run(run).checkpoint_dir(6) / "generator_ema.safetensors").write_bytes(b"junk")
    source = open_source(run)
    assert source.info["step"] == 4
