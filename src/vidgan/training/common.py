"""What the training loop and every task share: processes, batch order, seeded streams, EMA, LR schedule."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from vidgan.config import RunConfig
from vidgan.data.clips import ClipDataset
from vidgan.run import Run


class NonFiniteLossError(RuntimeError):
    """Training stopped: a loss, a weight or a running statistic became non-finite (or exploded)."""


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str | None = None) -> torch.device:
    if name and name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world == 1:
        return DistInfo(0, 1, dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), dev)


class BatchOrder:
    """Global batch indices as a pure function of (seed, step): a fresh permutation every epoch.

    Resuming needs no loader state, and every world size sees the same global batches.
    """

    def __init__(self, num_clips: int, batch_size: int, seed: int):
        self.n, self.batch, self.seed = num_clips, batch_size, seed
        self._cache: dict[int, np.ndarray] = {}

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._cache:
            self._cache = {e: np.random.default_rng([self.seed, e]).permutation(self.n)}
        return self._cache[e]

    def indices(self, step: int) -> np.ndarray:
        start = step * self.batch
        out = []
        while len(out) < self.batch:
            e, offset = divmod(start + len(out), self.n)
            out.extend(self._epoch(e)[offset : offset + self.batch - len(out)])
        return np.asarray(out)


def stream_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed for one (run seed, step, rank): independent random streams without saved state."""
    return int(np.random.SeedSequence([seed, step, rank, 3]).generate_state(2, dtype=np.uint64)[0] >> 1)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def standing_statistics(model: torch.nn.Module, run_pass, passes: int) -> None:
    """BigGAN's "standing statistics": the BatchNorm running statistics of `model` recomputed for its
    current weights, as plain averages over `passes` forward passes in training mode (`run_pass(i)`
    runs pass i).

    The EMA generator needs this. Its weights are an average over recent steps, while the running
    statistics it would otherwise carry were collected by the training generator's weights; sampled
    in eval mode with those, its clips came out measurably worse (docs/experiments/). Every other buffer (ctvgan's
    w_avg) is left as it was, and each process computes its own statistics (no cross-process sums),
    so this can run on one rank only.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    own = {id(b) for m in norms for b in m.buffers()}
    others = [(b, b.clone()) for b in model.buffers() if id(b) not in own]
    momenta, was_training = [m.momentum for m in norms], model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes
        m.local_statistics = True
    model.train()
    try:
        for i in range(passes):
            run_pass(i)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum, m.local_statistics = momentum, False
        for b, value in others:
            b.copy_(value)
        model.train(was_training)


def ema_beta(target: float, step: int) -> float:
    """EMA decay ramped up from 0.1 (StyleGAN-style warm-up: early weights are forgotten fast)."""
    return min(target, (1 + step) / (10 + step))


def lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier at `step`: a pure function of the step, so resuming needs no state."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose constant, linear or cosine")


@dataclass
class LoopContext:
    """What a task gets from the loop."""

    cfg: RunConfig
    data: ClipDataset
    run: Run
    info: DistInfo
    resume_from: Path | None
    text_table: torch.Tensor | None  # (N, 384) caption embeddings for text-conditional models
    progress: bool
    log: object


class Task:
    """One kind of training (GAN, VQ-VAE, prior): its networks, optimizers, data stream and step.

    Built from a LoopContext after the global seed is set; `load` restores a checkpoint, `begin`
    is called once with the first step, then `step(step)` once per update. The loop adds the RNG
    state, elapsed time and world size to what `checkpoint()` returns.
    """

    distributed = False  # True: can run under torchrun (the loop splits the batch across ranks)
    progress_keys: dict[str, str] = {"loss": "loss"}  # progress-bar label -> record key
    divergence_hint = "Lower the learning rate."

    @classmethod
    def check(cls, cfg: RunConfig) -> None:
        """Refuse settings this task cannot train, before anything is built or written."""

    @classmethod
    def resumed_config(cls, cfg: RunConfig, run: Run) -> RunConfig:
        """The config to continue `run` with (default: as given; the loop checks it against the saved one)."""
        return cfg

    def __init__(self, ctx: LoopContext):
        self.ctx, self.cfg = ctx, ctx.cfg
        # Where a decaying learning-rate schedule ends, when the loop predicted it from a time budget
        # (saved with each checkpoint); None: at train.steps, whatever a resumed run sets it to.
        self.schedule_steps: int | None = None

    def lr_scale(self, step: int) -> float:
        tc = self.cfg.train
        return lr_factor(tc.lr_schedule, step, self.schedule_steps or tc.steps, tc.warmup_steps)

    def describe(self) -> str | None:
        return None

    def load(self, checkpoint: Path, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def begin(self, step: int) -> None:
        pass

    def step(self, step: int) -> dict:
        raise NotImplementedError

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """The networks' state dicts (parameters and buffers, not copied) by checkpoint file name."""
        raise NotImplementedError

    def checkpoint(self) -> tuple[dict, dict, dict]:
        """(networks' state dicts by file name, optimizer/RNG tensors, JSON state)."""
        raise NotImplementedError

    def samples(self) -> torch.Tensor:
        """Float clips (B, C, T, H, W) in [-1, 1] on the CPU for the sample grid."""
        raise NotImplementedError

    def monitor(self, step: int) -> tuple[dict, str | None]:
        """Extra fields for a logged step, and a warning to print (or None)."""
        return {}, None

    @property
    def eval_generator(self) -> torch.nn.Module | None:
        return None
