"""The trainer learns, resumes the same run after a stop or a kill, and refuses NaN losses."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import FakeClock, planned_schedule_end, tiny_config
from vidgan.data.clips import ClipDataset
from vidgan.metrics.pixel_stats import pixel_statistics_distance
from vidgan.pipeline import VideoPipeline
from vidgan.run import Run, RunDirError, load_state, load_weights, step_of
from vidgan.training import losses
from vidgan.training.common import BatchOrder, NonFiniteLossError, lr_factor
from vidgan.training.gan import GANTask
from vidgan.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _steps_take(seconds: float, monkeypatch) -> FakeClock:
    """A fake clock for `train(clock=...)` that moves `seconds` with every training step (and never otherwise)."""
    clock, real_step = FakeClock(), GANTask.step

    def timed_step(self, step):
        record = real_step(self, step)
        clock.advance(seconds)
        return record

    monkeypatch.setattr(GANTask, "step", timed_step)
    return clock


def _wait_for(what, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Poll until `what()` holds (the event a signal is sent on); fail if the process ends first or it never does."""
    deadline = time.monotonic() + seconds
    while not what():
        if proc.poll() is not None:
            raise AssertionError(f"the training process ended (exit {proc.returncode}) before the event:\n{proc.communicate()}")
        assert time.monotonic() < deadline, f"no event in {seconds:.0f} s"
        time.sleep(0.02)


def _distance_after(run, real, steps, data, **overrides):
    train(tiny_config(data, **{"train.steps": steps, **overrides}), run, progress=False, log=lambda s: None)
    return pixel_statistics_distance(VideoPipeline.from_pretrained(run)(n=32, seed=1), real)


@pytest.mark.slow  # an end-to-end learning test: 3 runs of up to 150 steps
def test_tiny_videogan_moves_toward_the_data(mnist_data, tmp_path):
    real = ClipDataset(mnist_data).get_batch(range(32))[0].numpy()
    before = _distance_after(tmp_path / "r0", real, 1, mnist_data)
    after = _distance_after(tmp_path / "r1", real, 150, mnist_data)
    frozen = _distance_after(tmp_path / "r2", real, 150, mnist_data, **{"train.lr_g": 1e-12})  # rates must be > 0: as good as frozen
    assert after < 0.5 * before, (before, after)
    assert frozen > 2 * after, (frozen, after)  # the metric sees whether G trained at all


def test_resume_continues_the_same_run(mnist_data, tmp_path):
    # augmentation, a lazy R1 penalty and LR warm-up: every random stream and the LR must resume exactly
    extra = {"loss.augment": "color,translation,cutout", "loss.penalty": "r1", "loss.penalty_every": 2, "train.warmup_steps": 3}
    full = tmp_path / "full"
    train(tiny_config(mnist_data, **{"train.steps": 12, "train.checkpoint_every": 6, **extra}), full, progress=False, log=lambda s: None)
    part = tmp_path / "part"
    train(tiny_config(mnist_data, **{"train.steps": 6, **extra}), part, progress=False, log=lambda s: None)
    result = train(tiny_config(mnist_data, **{"train.steps": 12, **extra}), part, resume=True, progress=False, log=lambda s: None)
    assert result.step == 12
    a, b = Run(full).read_log(), Run(part).read_log()
    assert [r["step"] for r in b] == list(range(1, 13))
    for ra, rb in zip(a, b):
        assert ra["loss_d"] == pytest.approx(rb["loss_d"], abs=1e-5)
        assert ra["loss_g"] == pytest.approx(rb["loss_g"], abs=1e-5)
    wa = load_weights(Run(full).latest(), "generator_ema")
    wb = load_weights(Run(part).latest(), "generator_ema")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_run_dir_is_not_overwritten_and_resume_needs_a_run(mnist_data, tmp_path):
    train(tiny_config(mnist_data, **{"train.steps": 2}), tmp_path / "r", progress=False, log=lambda s: None)
    with pytest.raises(RunDirError, match="--resume"):
        train(tiny_config(mnist_data, **{"train.steps": 2}), tmp_path / "r", progress=False)
    with pytest.raises(RunDirError, match="no run to resume"):
        train(tiny_config(mnist_data), tmp_path / "empty", resume=True, progress=False)
    with pytest.raises(RunDirError, match="differ"):
        train(tiny_config(mnist_data, **{"model.z_dim": 7}), tmp_path / "r", resume=True, progress=False)


@pytest.mark.slow  # starts `vidgan train` processes
def test_resume_after_sigkill(mnist_data, tmp_path):
    """Kill -9 a training process at an arbitrary moment; the resumed run matches an uninterrupted one."""
    cfg = tiny_config(mnist_data, **{"train.steps": 100000, "train.checkpoint_every": 3})
    cfg_path = tmp_path / "cfg.json"
    cfg.save(cfg_path)
    cfg_path.rename(tmp_path / "cfg.yaml")  # JSON is valid YAML
    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "vidgan",
        "train",
        str(mnist_data),
        "--config",
        str(tmp_path / "cfg.yaml"),
        "--out",
        str(run),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill once a step past the second checkpoint is logged: the process is then inside a later step or a checkpoint write.
    _wait_for(lambda: len(Run(run).checkpoints()) >= 2 and Run(run).read_log()[-1]["step"] > step_of(Run(run).latest()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = Run(run).latest()
    assert last is not None
    resumed_from = json.loads((last / "state.json").read_text())["step"]
    target = resumed_from + 4
    subprocess.run(cmd[:-1] + ["--resume", "--steps", str(target), "--no-progress"], check=True, capture_output=True)
    log = Run(run).read_log()
    assert [r["step"] for r in log] == list(range(1, target + 1))
    ref = tmp_path / "ref"
    train(tiny_config(mnist_data, **{"train.steps": target}), ref, progress=False, log=lambda s: None)
    for ra, rb in zip(Run(ref).read_log()[resumed_from:], log[resumed_from:]):
        assert ra["loss_d"] == pytest.approx(rb["loss_d"], abs=1e-4)


def test_nonfinite_loss_is_reported_with_the_step(mnist_data, tmp_path, monkeypatch):
    calls = {"n": 0}

    def exploding_d_loss(real, fake, smoothing=0.0):
        calls["n"] += 1
        loss = losses.d_loss_nonsat(real, fake)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setitem(losses.LOSSES, "explode", (exploding_d_loss, losses.g_loss_nonsat))
    cfg = tiny_config(mnist_data, **{"train.steps": 10, "train.checkpoint_every": 2, "loss.name": "explode"})
    with pytest.raises(NonFiniteLossError, match=r"step 4: non-finite loss .*step_000000002"):
        train(cfg, tmp_path / "nan", progress=False, log=lambda s: None)


def test_time_budget_stops_with_a_checkpoint(mnist_data, tmp_path, monkeypatch):
    clock = _steps_take(0.25, monkeypatch)
    cfg = tiny_config(mnist_data, **{"train.steps": 10**6, "train.time_budget": 1.0})
    result = train(cfg, tmp_path / "b", progress=False, log=lambda s: None, clock=clock)
    assert result.stopped == "time_budget" and 0 < result.step < 10**6
    assert result.step == 5  # the first step that ends past the budget: 5 x 0.25 s > 1 s
    assert Run(tmp_path / "b").latest().name == f"step_{result.step:09d}"
    assert (tmp_path / "b" / "samples" / f"step_{result.step:09d}.gif").is_file()
    assert "schedule_steps" not in load_state(Run(tmp_path / "b").latest())[0]  # a constant rate: nothing predicted or saved


def test_a_decaying_schedule_ends_where_the_time_budget_does_and_resumes_unchanged(mnist_data, tmp_path, monkeypatch):
    """At 0.25 s a step, a 7.5 s budget ends after step 30: the schedule is planned from the steps it measured (5-25)."""
    said, clock = [], _steps_take(0.25, monkeypatch)
    cfg = tiny_config(
        mnist_data,
        **{"train.steps": 10**6, "train.time_budget": 7.5, "train.lr_schedule": "cosine", "train.log_every": 50, "train.loader_workers": 0},
    )
    result = train(cfg, tmp_path / "c", progress=False, log=said.append, clock=clock)
    assert result.stopped == "time_budget" and result.step > 25
    assert result.step == 31  # 31 x 0.25 s > 7.5 s
    end = load_state(Run(tmp_path / "c").latest())[0]["schedule_steps"]
    assert result.step / 3 <= end <= result.step * 3  # predicted from the step time, not the 10**6 cap
    assert end == round(30 * (1 + cfg.train.decay_past_budget))
    assert any(f"schedule to step {end}" in line and "ends near step 30 at 0.25 s a step" in line for line in said)
    assert lr_factor("cosine", result.step, end, 0) < lr_factor("cosine", result.step, 10**6, 0) - 0.1
    again = cfg.model_copy(update={"train": cfg.train.model_copy(update={"time_budget": 1.0})})
    resumed = train(again, tmp_path / "c", resume=True, progress=False, log=said.append, clock=clock)  # a new budget, the same schedule
    assert resumed.step == result.step + 5  # the new budget's own 1 s
    assert resumed.step > result.step
    assert load_state(Run(tmp_path / "c").latest())[0]["schedule_steps"] == end


def test_batch_order_is_a_function_of_seed_and_step():
    order = BatchOrder(10, 4, seed=3)
    seen = np.concatenate([order.indices(s) for s in range(5)])  # 20 indices = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert np.array_equal(BatchOrder(10, 4, seed=3).indices(4), order.indices(4))
    assert not np.array_equal(BatchOrder(10, 4, seed=4).indices(0), order.indices(0))


@pytest.mark.slow  # starts a `vidgan train` process
def test_ctrl_c_checkpoints_and_stops_cleanly(mnist_data, tmp_path):
    cfg = tiny_config(mnist_data, **{"train.steps": 100000, "train.checkpoint_every": 2})
    cfg.save(tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "vidgan",
        "train",
        str(mnist_data),
        "--config",
        str(tmp_path / "cfg.yaml"),
        "--out",
        str(run),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Ctrl-C once a step past the first checkpoint is logged: the handler is up and the stop lands mid-run.
    _wait_for(lambda: Run(run).latest() is not None and Run(run).read_log()[-1]["step"] > step_of(Run(run).latest()), proc)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert "interrupted" in output and "--resume" in output
    steps = [r["step"] for r in Run(run).read_log()]
    assert Run(run).latest().name == f"step_{steps[-1]:09d}"  # the last finished step was saved


@pytest.mark.parametrize(
    "loss",
    [
        {"loss.name": "hinge", "loss.augment": "translation,cutout"},
        {"loss.name": "wgan", "loss.penalty": "gp", "train.lr_d": 1e-4},
        {"loss.name": "lsgan", "loss.smoothing": 0.1},
        {"loss.name": "nonsat", "loss.penalty": "r1", "loss.penalty_weight": 1.0, "model.spectral_norm": True},
    ],
)
def test_every_loss_and_penalty_trains_without_nan(mnist_data, tmp_path, loss):
    result = train(tiny_config(mnist_data, **{"train.steps": 4, **loss}), tmp_path / "r", progress=False, log=lambda s: None)
    assert result.step == 4 and np.isfinite(result.loss_d) and np.isfinite(result.loss_g)
    assert all(np.isfinite(r["loss_d"]) for r in Run(tmp_path / "r").read_log())


def test_lr_schedules():
    assert [lr_factor("constant", s, 10, 0) for s in (0, 9)] == [1.0, 1.0]
    assert lr_factor("linear", 0, 10, 0) == 1.0 and lr_factor("linear", 5, 10, 0) == pytest.approx(0.5)
    assert lr_factor("cosine", 5, 10, 0) == pytest.approx(0.5) and lr_factor("cosine", 10, 10, 0) == pytest.approx(0.0)
    assert [lr_factor("cosine", s, 10, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="cosine"):
        lr_factor("step", 0, 10, 0)


def test_bad_loss_settings_fail_before_training(mnist_data, tmp_path):
    with pytest.raises(ValueError, match="penalty"):
        train(tiny_config(mnist_data, **{"loss.penalty": "l2"}), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="augmentation"):
        train(tiny_config(mnist_data, **{"loss.augment": "flip"}), tmp_path / "b", progress=False)


def test_mean_speed_leaves_out_the_warm_up_record(tmp_path):
    run = Run(tmp_path)
    assert run.mean_speed() == 0.0  # no log yet
    run.log_path.write_text('{"step": 10, "clips_per_s": 1.0}\n')
    assert run.mean_speed() == 1.0  # the warm-up is all there is
    with run.log_path.open("a") as f:
        f.write('{"step": 20, "clips_per_s": 30.0}\n{"metric": "fd"}\n{"step": 30, "clips_per_s": 50.0}\n')
    assert run.mean_speed() == 40.0  # steps 20 and 30; records without a speed skipped


@pytest.mark.parametrize("past", [0.0, 0.15])
def test_a_decay_is_planned_past_the_budget_by_decay_past_budget(past):
    """At 1 s a step and a 100 s budget, the budget ends at step 100; the decay is planned to end
    decay_past_budget past it (capped by train.steps)."""
    from vidgan.config import TrainConfig

    for steps, expected in ((10**6, round(100 * (1 + past))), (105, min(105, round(100 * (1 + past))))):
        tc = TrainConfig(steps=steps, time_budget=100.0, lr_schedule="cosine", decay_past_budget=past)
        end, said = planned_schedule_end(tc)
        assert end == expected, (past, steps, end)
        assert "budget ends near step 100" in said
