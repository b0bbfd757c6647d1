"""A checkpoint written by 2 torchrun processes resumes on 1 process and continues the same run."""

import pytest
from test_ddp import TORCHRUN, _run

from helpers import tiny_config
from vidgan.run import Run
from vidgan.training.loop import train


@pytest.mark.slow  # starts torchrun and `vidgan train` processes
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not on PATH")
def test_two_process_checkpoint_resumes_on_one_process(mnist_data, tmp_path):
    """What carries over between world sizes: weights, EMA, Adam state, step, the noise stream and the
    batch order (both functions of the global batch). Synced BatchNorm makes 2 processes compute the
    1-process function, so the continued run matches a 1-process run up to float summation order."""
    cfg_path = tmp_path / "cfg.yaml"
    tiny_config(mnist_data, **{"train.steps": 4, "train.batch_size": 8, "train.checkpoint_every": 2}).save(cfg_path)
    run = tmp_path / "run"
    _run([str(mnist_data), "--config", str(cfg_path), "--out", str(run), "--steps", "2"], nproc=2)
    proc = _run(["--resume", "--out", str(run), "--steps", "4"], nproc=0)
    assert "saved by 2 processes, continuing on 1" in proc.stdout + proc.stderr
    log = Run(run).read_log()
    assert [r["step"] for r in log] == [1, 2, 3, 4]

    ref = tmp_path / "ref"
    train(tiny_config(mnist_data, **{"train.steps": 4, "train.batch_size": 8}), ref, progress=False, log=lambda s: None)
    for ra, rb in zip(Run(ref).read_log(), log):
        assert rb["loss_d"] == pytest.approx(ra["loss_d"], rel=1e-3, abs=1e-4)
        assert rb["loss_g"] == pytest.approx(ra["loss_g"], rel=1e-3, abs=1e-4)
