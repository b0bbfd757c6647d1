"""Two processes under torchrun (gloo, CPU) compute the same run as one process on the same global batch."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from helpers import tiny_config
from vidgan.config_upgrade import load_run_config
from vidgan.models.registry import build_model
from vidgan.run import Run, load_weights

TORCHRUN = shutil.which("torchrun")

pytestmark = pytest.mark.slow  # every test starts processes (torchrun, or spawned ranks)


def _run(args, nproc, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = args[args.index("--out") + 1]  # torchrun's logs beside the run (by default a new /tmp folder each time)
    launcher = [TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", f"--log-dir={out}-torchrun", *extra] if nproc else [sys.executable]
    proc = subprocess.run(
        [*launcher, "-m", "vidgan", "train", *args, "--no-progress"], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not on PATH")
def test_two_process_ddp_matches_one_process(mnist_data, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    tiny_config(mnist_data, **{"train.steps": 6, "train.batch_size": 8, "train.checkpoint_every": 6}).save(cfg_path)
    single, double = tmp_path / "single", tmp_path / "ddp"
    _run([str(mnist_data), "--config", str(cfg_path), "--out", str(single)], nproc=0)
    _run([str(mnist_data), "--config", str(cfg_path), "--out", str(double)], nproc=2)

    a, b = Run(single).read_log(), Run(double).read_log()
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b):
        assert rb["loss_d"] == pytest.approx(ra["loss_d"], rel=1e-3, abs=1e-4)
        assert rb["loss_g"] == pytest.approx(ra["loss_g"], rel=1e-3, abs=1e-4)

    # After 6 Adam steps the two runs' weights agree far more closely than either moved from the
    # initial weights: the averaged gradients are the single-process gradients.
    saved = load_run_config(single / "config.json")
    torch.manual_seed(saved.train.seed)
    w0 = build_model(saved.model)[0].state_dict()
    wa = load_weights(Run(single).latest(), "generator")
    wb = load_weights(Run(double).latest(), "generator")
    # Norms, not largest elements: Adam moves a weight whose gradient is ~0 by up to its learning rate
    # in either direction, so rounding-level differences in such a gradient can flip single elements.
    for key in wa:
        if wa[key].is_floating_point() and "running" not in key:
            moved = (wa[key] - w0[key]).norm()
            assert moved > 0, key
            assert (wa[key] - wb[key]).norm() < 0.05 * moved, (key, (wa[key] - wb[key]).norm() / moved)
    # only rank 0 wrote files: one event file, one log line per step
    assert len(list((double / "tb").glob("events.*"))) == 1


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not on PATH")
def test_two_node_rendezvous_on_localhost(mnist_data, tmp_path):
    """The multi-node command: 2 'nodes' x 1 process meeting through a c10d rendezvous on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg_path = tmp_path / "cfg.yaml"
    tiny_config(mnist_data, **{"train.steps": 3, "train.batch_size": 8}).save(cfg_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=vidgan-test"]
    runs = [tmp_path / f"node{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                TORCHRUN,
                *common,
                f"--log-dir={run}-torchrun",
                "-m",
                "vidgan",
                "train",
                str(mnist_data),
                "--config",
                str(cfg_path),
                "--out",
                str(run),
                "--no-progress",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for run in runs
    ]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    written = [r for r in runs if (r / "log.jsonl").exists()]
    assert len(written) == 1  # exactly one process was rank 0
    assert [x["step"] for x in Run(written[0]).read_log()] == [1, 2, 3]


def _plan_on_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank of the test below: its clock runs `rank + 1` s a step, so alone each rank would plan
    a different end."""
    import torch.distributed as dist

    from helpers import planned_schedule_end
    from vidgan.config import TrainConfig

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        tc = TrainConfig(steps=10**6, time_budget=100.0, lr_schedule="cosine", decay_past_budget=0.15)
        end, _ = planned_schedule_end(tc, seconds_per_step=rank + 1.0, world=world)
        with open(f"{out}/rank{rank}.txt", "w") as f:
            f.write(str(end))
    finally:
        dist.destroy_process_group()


def test_every_rank_plans_rank_0s_schedule_end(tmp_path):
    """Ranks that measure different step times still decay their learning rates to the same step:
    rank 0's (1 s a step: the 100 s budget ends at step 100, the decay 15% later), not rank 1's (2 s)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_plan_on_rank, args=(2, port, str(tmp_path)), nprocs=2)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)] == ["115", "115"]
