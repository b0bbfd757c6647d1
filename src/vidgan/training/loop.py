"""The Trainer: one readable GAN loop (D step, G step, EMA), with DDP, logging and checkpoints.

Launch on one process with `vidgan train`, or on several with
`torchrun --nproc_per_node N -m vidgan train ...`: the global batch is split across ranks,
batch statistics are synchronised (models.layers.BatchNorm), and only rank 0 writes files.
Every source of randomness is either derived from (seed, step[, rank]) or saved in the checkpoint,
so a resumed run continues the exact run it came from. Nothing saved depends on the number of
processes: the batch order and the noise are drawn per global batch, augmentation per (step, rank),
so a checkpoint resumes on any world size; without augmentation the continued run even computes
the same updates (up to float summation order: batch statistics are synchronised). How each step runs fast (precision, kernels, compile) is
vidgan.training.speed's job; the step itself is `gan_step`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from vidgan.config import LossConfig, RunConfig
from vidgan.data.clips import ClipDataset, ClipLoader, default_loader_workers
from vidgan.data.video_io import to_model, to_uint8, write_grid
from vidgan.metrics.diversity import collapse_warning, diversity
from vidgan.models.layers import Condition, standardise_text
from vidgan.models.registry import build_model
from vidgan.training import checkpoint as ckpt
from vidgan.training.augment import augment
from vidgan.training.losses import PENALTIES, get_loss, gradient_penalty, r1_penalty
from vidgan.training.speed import Compiler, StepPrecision, fp32_batch_statistics, make_adam, resolve_speed, to_channels_last


class NonFiniteLossError(RuntimeError):
    pass


class RunDirError(RuntimeError):
    pass


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    stopped: str  # "steps" | "time_budget" | "interrupted"
    loss_d: float
    loss_g: float
    clips_per_s: float


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


@dataclass
class StepSettings:
    """How one GAN update is computed: the loss pair, penalties, augmentation (from LossConfig)."""

    d_loss: Callable
    g_loss: Callable
    smoothing: float = 0.0
    penalty: str = "none"
    penalty_weight: float = 10.0
    penalty_every: int = 1
    augment: str = ""
    aug_rng: torch.Generator | None = None
    mask_l1: float = 0.0

    @classmethod
    def from_config(cls, loss: LossConfig, seed: int) -> StepSettings:
        if loss.penalty not in PENALTIES:
            raise ValueError(f"unknown penalty {loss.penalty!r}; choose one of {', '.join(PENALTIES)}")
        augment(torch.zeros(1, 1, 1, 8, 8), loss.augment)  # an unknown policy fails now, not at step 1
        d_loss, g_loss = get_loss(loss.name)
        return cls(
            d_loss,
            g_loss,
            loss.smoothing,
            loss.penalty,
            loss.penalty_weight,
            loss.penalty_every,
            loss.augment,
            torch.Generator().manual_seed(seed + 3),
            loss.mask_l1,
        )

    def aug(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.augment, self.aug_rng) if self.augment else x


def _module(m):
    """The nn.Module behind a compiled wrapper (requires_grad_, last_mask and no_sync live there)."""
    return getattr(m, "eager", m)


def _sync_unless(module, skip: bool):
    """DDP all-reduces gradients in backward; with gradient accumulation only the last micro-batch's does."""
    no_sync = getattr(_module(module), "no_sync", None)
    return no_sync() if skip and no_sync is not None else contextlib.nullcontext()


def _d_loss(G, D, D_train, settings: StepSettings, prec: StepPrecision, real, z, cond, do_penalty: bool):
    """Discriminator loss on one (micro-)batch: real and fake in one forward pass (D has no batch statistics)."""
    with torch.no_grad(), prec.forward():
        fake = G(z, cond)
    r1 = do_penalty and settings.penalty == "r1"
    # fp32: R1 differentiates the loss's own forward pass. Reduced precision: R1 gets a separate fp32 pass
    # of D over the real clips (StyleGAN2's separate regularisation pass): the gradient of a gradient
    # is where bf16/fp16 rounding hurts, and the loss pass then needs no graph back to the inputs.
    shared_r1 = r1 and not prec.reduced
    real = real.detach().requires_grad_(r1)
    real_aug = settings.aug(real)
    both = None if cond is None else cond._map(lambda v: torch.cat([v, v]))
    with prec.forward():
        logits = D_train(torch.cat([real_aug if shared_r1 else real_aug.detach(), settings.aug(fake)]), both)
    logits = logits.float()  # losses and penalties in fp32
    real_logits, fake_logits = logits[: len(real)], logits[len(real) :]
    loss_d = settings.d_loss(real_logits, fake_logits, smoothing=settings.smoothing)
    total_d = loss_d
    if do_penalty:
        weight = settings.penalty_weight * settings.penalty_every
        if r1:
            r1_logits = real_logits if shared_r1 else D(real_aug, cond).float()
            total_d = total_d + 0.5 * weight * r1_penalty(r1_logits, real)
        else:  # runs D in fp32 itself (autocast off)
            total_d = total_d + weight * gradient_penalty(lambda x: D(x, cond), real, fake, generator=settings.aug_rng)
    return loss_d, real_logits, fake_logits, total_d


def gan_step(
    G,
    D,
    G_train,
    D_train,
    opt_g,
    opt_d,
    settings: StepSettings,
    real,
    z_d,
    z_g,
    cond: Condition | None = None,
    step: int = 0,
    precision: StepPrecision | None = None,
    accum: int = 1,
):
    """One discriminator update then one generator update; returns the losses and D's logits.

    G_train / D_train are the DDP-wrapped modules (or G / D themselves on one process). Fake clips
    are generated for the real batch's conditions (labels, first frames, captions).
    precision: autocast (and fp16 loss scaling) for the forward passes; losses, penalties and the
    optimizer run in fp32. accum: the batch is processed as `accum` micro-batches whose gradients add
    up to the whole batch's (exactly so for layers without batch statistics: VideoGAN's D; G's
    BatchNorm then normalises each micro-batch by its own statistics).
    """
    prec = precision or StepPrecision()
    if len(real) % accum:
        raise ValueError(f"a batch of {len(real)} clips does not split into {accum} equal micro-batches")
    size = len(real) // accum
    parts = [slice(i * size, (i + 1) * size) for i in range(accum)]
    do_penalty = settings.penalty != "none" and step % settings.penalty_every == 0

    opt_d.zero_grad(set_to_none=True)
    d_losses, real_out, fake_out = [], [], []
    for i, part in enumerate(parts):
        c = None if cond is None else cond[part]
        with _sync_unless(D_train, i < accum - 1):
            loss_d, real_logits, fake_logits, total_d = _d_loss(G, D, D_train, settings, prec, real[part], z_d[part], c, do_penalty)
            prec.backward(total_d / accum, prec.scaler_d)
        d_losses.append(loss_d.detach())
        real_out.append(real_logits.detach())
        fake_out.append(fake_logits.detach())
    prec.step(opt_d, prec.scaler_d)

    # Generator step: D's weights are frozen and used unwrapped (no DDP sync for D here).
    _module(D).requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    g_losses = []
    for i, part in enumerate(parts):
        c = None if cond is None else cond[part]
        with _sync_unless(G_train, i < accum - 1):
            with prec.forward():
                logits = D(settings.aug(G_train(z_g[part], c)), c)
            loss_g = settings.g_loss(logits.float())
            total_g = loss_g
            mask = getattr(_module(G), "last_mask", None)
            if settings.mask_l1 and mask is not None:  # two-stream: keep the foreground small
                total_g = total_g + settings.mask_l1 * mask.float().abs().mean()
            prec.backward(total_g / accum, prec.scaler_g)
        g_losses.append(loss_g.detach())
    prec.step(opt_g, prec.scaler_g)
    _module(D).requires_grad_(True)
    return torch.stack(d_losses).mean(), torch.stack(g_losses).mean(), torch.cat(real_out), torch.cat(fake_out)


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


def batch_condition(kind: str, real: torch.Tensor, labels: torch.Tensor, text: torch.Tensor | None = None) -> Condition | None:
    """The Condition a model of this kind is trained with, taken from the real batch."""
    if kind == "none":
        return None
    if kind == "class":
        return Condition(labels=labels)
    if kind == "first-frame":
        return Condition(first_frame=real[:, :, 0])
    if kind == "text":
        return Condition(text=text)
    raise ValueError(f"unknown condition {kind!r}; use none, class, text or first-frame")


def caption_embeddings(data: ClipDataset) -> torch.Tensor:
    """(N, 384) sentence embeddings of every clip's caption, for text-conditional training."""
    from vidgan.text import embed_captions

    captions = [c.get("caption") for c in data.clips]
    missing = sum(c is None for c in captions)
    if missing:
        raise ValueError(
            f"{data.root}: {missing} of {len(captions)} clips have no caption; text conditioning needs captions "
            "(captions.json or VIDEO.txt beside each video when preparing, or builtin:shapes)"
        )
    return embed_captions(captions)


def _prepare_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (or None for a fresh run); refuses to overwrite another run."""
    saved = run_dir / "config.json"
    if not resume:
        if saved.exists():
            raise RunDirError(f"{run_dir}: already holds a run; pass --resume to continue it, or choose another --out")
        return None
    if not saved.exists():
        raise RunDirError(f"{run_dir}: no run to resume (no config.json); start it without --resume")
    old = RunConfig.load(saved)
    if old.model != cfg.model or old.loss != cfg.loss:
        raise RunDirError(f"{run_dir}: the model/loss settings differ from the saved run's config.json; resume with the saved config")
    return ckpt.latest_checkpoint(run_dir)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from: they belong to a lost future."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        path.write_text("".join(ln + "\n" for ln in lines))


def train(
    cfg: RunConfig, run_dir: str | Path, resume: bool = False, device: str | None = None, progress: bool = True, log=print
) -> TrainResult:
    if cfg.model.name in ("vqvae", "videogpt"):  # the two-stage generator has its own loops
        from vidgan.training.two_stage import train_two_stage

        return train_two_stage(cfg, run_dir, resume=resume, device=device, progress=progress, log=log)
    info = setup_distributed(device)
    run_dir = Path(run_dir)
    tc = cfg.train
    if tc.batch_size % (info.world * tc.grad_accum):
        raise ValueError(
            f"batch_size {tc.batch_size} must be divisible by the number of processes ({info.world}) times grad_accum ({tc.grad_accum})"
        )
    local_batch = tc.batch_size // info.world
    plan = resolve_speed(tc, info.device, width=cfg.model.max_channels)

    data = ClipDataset(cfg.data)
    cfg = cfg.model_copy(deep=True)
    cfg.model.frames, cfg.model.resolution = data.frames, data.size
    cfg.model.channels, cfg.model.num_classes, cfg.model.classes = data.channels, data.num_classes, list(data.classes)
    cfg.model.fps = float(data.fps or 8.0)
    resume_from = _prepare_run_dir(cfg, run_dir, resume)

    torch.manual_seed(tc.seed)  # identical initial weights on every rank
    G, D = build_model(cfg.model)
    G.to(info.device)
    D.to(info.device)
    if plan.channels_last:
        to_channels_last(G)
        to_channels_last(D)
    if plan.dtype is not None and info.world > 1:  # cross-process BatchNorm sums its statistics itself
        fp32_batch_statistics(G)
        fp32_batch_statistics(D)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_g = make_adam(G.parameters(), tc.lr_g, tc.betas, plan)
    opt_d = make_adam(D.parameters(), tc.lr_d, tc.betas, plan)
    prec = StepPrecision(plan)
    settings = StepSettings.from_config(cfg.loss, tc.seed)
    lr_factor(tc.lr_schedule, 0, tc.steps, tc.warmup_steps)  # validate the schedule name up front
    noise = torch.Generator().manual_seed(tc.seed + 1)  # same stream on every rank; each takes its slice
    fixed_z = torch.randn(tc.num_samples, G.z_dim, generator=torch.Generator().manual_seed(tc.seed + 2))
    # Sample grids and the diversity monitor use the first clips of the dataset as their conditions
    # (labels, first frames, captions) and as the real reference; one per fixed noise vector, cycling
    # through the dataset when it has fewer clips than that.
    text_table = caption_embeddings(data) if cfg.model.condition == "text" else None
    if text_table is not None and resume_from is None:  # on resume the checkpoint holds them
        standardise_text([G, G_ema, D], text_table)
    ref_index = [i % len(data) for i in range(tc.num_samples)]
    ref_clips, ref_labels = data.get_batch(ref_index)
    ref_real = to_model(ref_clips)
    if cfg.model.condition == "class":
        ref_labels = torch.arange(tc.num_samples) % max(1, data.num_classes)  # every class in the grid
    fixed_cond = batch_condition(cfg.model.condition, ref_real, ref_labels, None if text_table is None else text_table[ref_index])
    real_distance = diversity(ref_real).mean_distance

    step, elapsed_before = 0, 0.0
    if resume_from is not None:
        G.load_state_dict(ckpt.load_weights(resume_from, "generator"))
        G_ema.load_state_dict(ckpt.load_weights(resume_from, "generator_ema"))
        D.load_state_dict(ckpt.load_weights(resume_from, "discriminator"))
        state, tensors = ckpt.load_state(resume_from)
        ckpt.optimizer_from_flat(opt_g, "opt_g", tensors, state["opt_g"])
        ckpt.optimizer_from_flat(opt_d, "opt_d", tensors, state["opt_d"])
        noise.set_state(tensors["rng.noise"])
        torch.set_rng_state(tensors["rng.torch"])
        prec.load_state_dict(state.get("loss_scalers", {}))
        step, elapsed_before = state["step"], state["elapsed"]
        saved_world = state.get("world_size", info.world)
        log(
            f"resuming {run_dir} from step {step}"
            + (f" (saved by {saved_world} processes, continuing on {info.world})" if saved_world != info.world else "")
        )
    elif resume:
        log(f"{run_dir}: no checkpoint yet; starting from step 0")

    if info.is_main:
        log(plan.describe(local_batch // tc.grad_accum))
    ddp_devices = [info.device.index] if info.device.type == "cuda" else None  # one GPU per process
    if info.world > 1 and plan.channels_last and any(p.dim() == 5 and p.shape[1] == 1 for p in D.parameters()):
        # Grey clips: D's first conv has one input channel, whose channels-last gradient differs from the
        # bucket only in the stride of a size-1 dimension (the same memory); DDP warns about it anyway.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    G_train = DDP(G, device_ids=ddp_devices) if info.world > 1 else G
    D_train = DDP(D, device_ids=ddp_devices) if info.world > 1 else D
    # torch.compile (opt-in): every way the step calls G and D; a failure turns the run back to eager.
    compiler = Compiler(plan.compile, log if info.is_main else (lambda s: None))
    G_run, D_run = compiler(G), compiler(D)
    G_train = G_run if G_train is G else compiler(G_train)
    D_train = D_run if D_train is D else compiler(D_train)
    order = BatchOrder(len(data), tc.batch_size, tc.seed)
    writer = None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
        _truncate_log(run_dir / "log.jsonl", step)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step)
    evaluator = None
    if tc.eval_every:  # quality metrics every N steps (vidgan.metrics), appended to RUN/metrics.jsonl
        from vidgan.metrics.evaluate import TrainingEval, score_line

        evaluator = TrainingEval(cfg, run_dir, info.rank, info.world, info.device, text_table)

    def save(at_step: int) -> None:
        if not info.is_main:
            return
        g_t, g_meta = ckpt.optimizer_to_flat(opt_g, "opt_g")
        d_t, d_meta = ckpt.optimizer_to_flat(opt_d, "opt_d")
        tensors = {**g_t, **d_t, "rng.noise": noise.get_state(), "rng.torch": torch.get_rng_state()}
        ckpt.save_checkpoint(
            run_dir,
            at_step,
            {"generator": G.state_dict(), "generator_ema": G_ema.state_dict(), "discriminator": D.state_dict()},
            tensors,
            {
                "elapsed": elapsed_before + time.monotonic() - t_start,
                "opt_g": g_meta,
                "opt_d": d_meta,
                "world_size": info.world,
                "precision": plan.precision,
                "loss_scalers": prec.state_dict(),
            },
            keep=tc.keep_checkpoints,
        )

    def fixed_samples() -> torch.Tensor:
        with torch.no_grad():
            return G_ema(fixed_z.to(info.device), None if fixed_cond is None else fixed_cond.to(info.device)).float().cpu()

    def write_samples(at_step: int) -> None:
        if info.is_main:
            clips = to_uint8(fixed_samples())
            write_grid(run_dir / "samples" / f"step_{at_step:09d}.gif", clips, fps=cfg.model.fps)

    interrupted = {"flag": False}

    def on_sigint(signum, frame):  # first Ctrl-C: finish the step and checkpoint; second: abort
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True

    old_handler = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    # With a time budget the step count is only a cap: the bar then counts steps and shows the time left.
    bar_total = tc.steps if tc.time_budget is None else None
    bar = tqdm(total=bar_total, initial=step, desc="train", unit="step", disable=not (progress and info.is_main), dynamic_ncols=True)
    t_start = time.monotonic()
    t_log, clips_seen, clips_per_s = time.monotonic(), 0, 0.0
    stopped, stats, collapsed_logs = "steps", torch.zeros(5), 0
    lo, hi = info.rank * local_batch, (info.rank + 1) * local_batch
    workers = default_loader_workers(info.device, tc.loader_workers)
    batches = iter(
        ClipLoader(data, order.indices, lo, hi, start=step, stop=tc.steps, workers=workers, pin_memory=info.device.type == "cuda")
    )
    try:
        while step < tc.steps:
            idx, clips, labels = next(batches)
            real = to_model(clips.to(info.device, non_blocking=True))  # uint8 until the device: 4x less to copy
            if plan.channels_last:
                real = real.contiguous(memory_format=torch.channels_last_3d)
            text = None if text_table is None else text_table[idx].to(info.device)
            cond = batch_condition(cfg.model.condition, real, labels.to(info.device), text)
            z_d = torch.randn(tc.batch_size, G.z_dim, generator=noise)[lo:hi].to(info.device)
            z_g = torch.randn(tc.batch_size, G.z_dim, generator=noise)[lo:hi].to(info.device)

            factor = lr_factor(tc.lr_schedule, step, tc.steps, tc.warmup_steps)
            for opt, base in ((opt_g, tc.lr_g), (opt_d, tc.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = base * factor
            # Augmentation draws: a fresh stream per (seed, step, rank), so ranks augment differently and a
            # resumed run (on any number of processes) needs no saved augmentation state.
            settings.aug_rng.manual_seed(stream_seed(tc.seed, step, info.rank))
            loss_d, loss_g, real_logits, fake_logits = gan_step(
                G_run, D_run, G_train, D_train, opt_g, opt_d, settings, real, z_d, z_g, cond, step, precision=prec, accum=tc.grad_accum
            )
            ema_update(G_ema, G, min(tc.ema_beta, (1 + step) / (10 + step)))
            step += 1

            over_budget = tc.time_budget is not None and time.monotonic() - t_start > tc.time_budget
            stop_flag = torch.tensor(float(over_budget or interrupted["flag"]), device=loss_d.device)
            stats = torch.stack([loss_d, loss_g, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean(), stop_flag]).float()
            if info.world > 1:  # on the device: nccl reduces GPU tensors only
                dist.all_reduce(stats)
                stats[:4] /= info.world
            stats = stats.cpu()
            if not torch.isfinite(stats[:2]).all():
                last = ckpt.latest_checkpoint(run_dir)
                raise NonFiniteLossError(
                    f"step {step}: non-finite loss (D {stats[0]:.4g}, G {stats[1]:.4g}); training stopped. "
                    f"Last good checkpoint: {last or 'none'}. Lower the learning rate or turn on spectral_norm."
                )
            clips_seen += tc.batch_size
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.steps:
                now = time.monotonic()
                clips_per_s = clips_seen / max(now - t_log, 1e-9)
                t_log, clips_seen = now, 0
                record = {
                    "step": step,
                    "loss_d": stats[0].item(),
                    "loss_g": stats[1].item(),
                    "d_real": stats[2].item(),
                    "d_fake": stats[3].item(),
                    "clips_per_s": clips_per_s,
                }
                if info.is_main and tc.num_samples >= 2:
                    div = diversity(fixed_samples(), reference_distance=real_distance)
                    record |= div.as_dict() | {"real_diversity": real_distance}
                    warning = collapse_warning(div, real_distance) if step > tc.warmup_collapse_steps else None
                    # Say it when it starts, then every 20th logged step while it lasts: not every line.
                    collapsed_logs = collapsed_logs + 1 if warning else 0
                    if warning and collapsed_logs % 20 == 1:
                        with tqdm.external_write_mode():
                            log(f"step {step}: {warning}")
                left = {} if tc.time_budget is None else {"budget_left": f"{max(0.0, tc.time_budget - (now - t_start)):.0f}s"}
                bar.set_postfix(d=f"{record['loss_d']:.3f}", g=f"{record['loss_g']:.3f}", clips_s=f"{clips_per_s:.1f}", **left)
                if info.is_main:
                    with open(run_dir / "log.jsonl", "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    for key in ("loss_d", "loss_g", "d_real", "d_fake", "clips_per_s", "diversity", "near_duplicates"):
                        if key in record:
                            writer.add_scalar(f"train/{key}", record[key], step)
            if step % tc.sample_every == 0:
                write_samples(step)
            if evaluator is not None and step % tc.eval_every == 0:
                scores = evaluator(G_ema, step)  # every rank generates its share; rank 0 gets the numbers
                if info.is_main:
                    for r in scores:
                        writer.add_scalar(f"eval/{r['metric']}", r["value"], step)
                    with tqdm.external_write_mode():
                        log(score_line(step, scores))
            if stats[4] > 0:
                stopped = "interrupted" if interrupted["flag"] else "time_budget"
                break
            if step % tc.checkpoint_every == 0:
                save(step)
        if ckpt.latest_checkpoint(run_dir) != ckpt.checkpoint_dir(run_dir, step) or stopped != "steps":
            save(step)
        if step % tc.sample_every:
            write_samples(step)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if info.world > 1:
        dist.barrier()
    if info.is_main and stopped != "steps":
        log(f"stopped at step {step} ({stopped.replace('_', ' ')}); checkpoint saved, continue with --resume")
    return TrainResult(run_dir, step, stopped, stats[0].item(), stats[1].item(), clips_per_s)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
