"""GAN training: the D-then-G update (`GANStep`) and the task that runs it in the training loop.

Every GAN in the model registry (videogan, videogan-2stream, tgan, mocogan, ctvgan, sprites) trains here.
Models trained on a few frames per clip (ctvgan, sprites: `model.sparse_frames` = K) get K frame times per
clip drawn per step; the real clips are cut to those frames, G renders the same times and D is told
them. How each step runs fast (precision, kernels, compile) is vidgan.training.speed's job.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from vidgan.conditioning import batch_condition, reference_batch
from vidgan.config import LossConfig
from vidgan.data.clips import ClipLoader, default_loader_workers
from vidgan.data.video_io import to_model
from vidgan.metrics.diversity import collapse_warning, diversity
from vidgan.models.layers import Condition, standardise_text
from vidgan.models.registry import build_model
from vidgan.run import load_weights
from vidgan.training import checkpoint as ckpt
from vidgan.training.augment import augment, resolve_policy
from vidgan.training.common import BatchOrder, LoopContext, Task, ema_beta, ema_update, standing_statistics, stream_seed
from vidgan.training.losses import PENALTIES, get_loss, gradient_penalty, mode_seeking, r1_penalty
from vidgan.training.speed import Compiler, StepPrecision, fp32_batch_statistics, make_adam, resolve_speed, to_channels_last


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
    mode_seeking: float = 0.0

    @classmethod
    def from_config(cls, loss: LossConfig, seed: int, clips: int | None = None) -> StepSettings:
        """clips: how many training clips there are (what loss.augment "auto" decides by)."""
        if loss.penalty not in PENALTIES:
            raise ValueError(f"unknown penalty {loss.penalty!r}; choose one of {', '.join(PENALTIES)}")
        policy = resolve_policy(loss.augment, clips)
        augment(torch.zeros(1, 1, 1, 8, 8), policy)  # an unknown policy fails now, not at step 1
        d_loss, g_loss = get_loss(loss.name)
        return cls(
            d_loss,
            g_loss,
            loss.smoothing,
            loss.penalty,
            loss.penalty_weight,
            loss.penalty_every,
            policy,
            torch.Generator().manual_seed(seed + 3),
            loss.mask_l1,
            loss.mode_seeking,
        )

    def aug(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.augment, self.aug_rng) if self.augment else x


def _module(m):
    """The nn.Module behind a compiled wrapper (requires_grad_ and no_sync live there)."""
    return getattr(m, "eager", m)


def _sync_unless(module, skip: bool):
    """DDP all-reduces gradients in backward; with gradient accumulation only the last micro-batch's does."""
    no_sync = getattr(_module(module), "no_sync", None)
    return no_sync() if skip and no_sync is not None else contextlib.nullcontext()


@dataclass
class GANStep:
    """One discriminator update then one generator update (StyleGAN2-ADA's Loss phases), called per batch.

    G / D are the networks used unwrapped (D's forward for penalties and G's update; G for D's fakes);
    G_train / D_train are what gradients flow through: the DDP-wrapped modules, or G / D themselves
    on one process. Fake clips are generated for the real batch's conditions (labels, first frames,
    captions). precision: autocast (and fp16 loss scaling) for the forward passes; losses, penalties
    and the optimizer run in fp32. accum: each batch is processed as `accum` micro-batches whose
    gradients add up to the whole batch's (exactly so for layers without batch statistics:
    VideoGAN's D; G's BatchNorm then normalises each micro-batch by its own statistics).
    """

    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    settings: StepSettings
    G_train: torch.nn.Module | None = None
    D_train: torch.nn.Module | None = None
    precision: StepPrecision | None = None
    accum: int = 1

    def __post_init__(self):
        self.G_train = self.G if self.G_train is None else self.G_train
        self.D_train = self.D if self.D_train is None else self.D_train
        self.precision = self.precision or StepPrecision()
        # the generator outputs its losses need (a mask, the drawing), asked for only when used
        settings, outputs = self.settings, getattr(_module(self.G), "extra_outputs", ())
        self.extras = bool(settings.mask_l1 and "mask" in outputs or settings.mode_seeking and "drawing" in outputs)

    def _d_loss(self, real, z, cond, do_penalty: bool, times=None):
        """Discriminator loss on one (micro-)batch: real and fake in one forward pass (D has no batch statistics)."""
        G, D, settings, prec = self.G, self.D, self.settings, self.precision
        at = {} if times is None else {"times": times}
        with torch.no_grad(), prec.forward():
            fake = G(z, cond, **at)
        r1 = do_penalty and settings.penalty == "r1"
        # fp32: R1 differentiates the loss's own forward pass. Reduced precision: R1 gets a separate fp32 pass
        # of D over the real clips (StyleGAN2's separate regularisation pass): the gradient of a gradient
        # is where bf16/fp16 rounding hurts, and the loss pass then needs no graph back to the inputs.
        shared_r1 = r1 and not prec.reduced
        real = real.detach().requires_grad_(r1)
        real_aug = settings.aug(real)
        both = None if cond is None else cond._map(lambda v: torch.cat([v, v]))
        both_at = {} if times is None else {"times": torch.cat([times, times])}
        with prec.forward():
            logits = self.D_train(torch.cat([real_aug if shared_r1 else real_aug.detach(), settings.aug(fake)]), both, **both_at)
        logits = logits.float()  # losses and penalties in fp32
        real_logits, fake_logits = logits[: len(real)], logits[len(real) :]
        loss_d = settings.d_loss(real_logits, fake_logits, smoothing=settings.smoothing)
        total_d = loss_d
        if do_penalty:
            weight = settings.penalty_weight * settings.penalty_every
            if r1:
                r1_logits = real_logits if shared_r1 else D(real_aug, cond, **at).float()
                total_d = total_d + 0.5 * weight * r1_penalty(r1_logits, real)
            else:  # runs D in fp32 itself (autocast off)
                total_d = total_d + weight * gradient_penalty(lambda x: D(x, cond, **at), real, fake, generator=settings.aug_rng)
        return loss_d, real_logits, fake_logits, total_d

    def _g_loss(self, z, cond, times=None):
        settings = self.settings
        at = {} if times is None else {"times": times}
        with self.precision.forward():
            fake, extra = self.G_train(z, cond, **at, extras=True) if self.extras else (self.G_train(z, cond, **at), {})
            logits = self.D(settings.aug(fake), cond, **at)
        loss_g = settings.g_loss(logits.float())
        total_g = loss_g
        if settings.mask_l1 and "mask" in extra:  # keep the two-stream foreground / the sprites small
            total_g = total_g + settings.mask_l1 * extra["mask"].float().abs().mean()
        if settings.mode_seeking:  # what the generator drew and the noise it came from, else the clips
            total_g = total_g + settings.mode_seeking * mode_seeking(*extra.get("drawing", (fake, z)))
        return loss_g, total_g

    def __call__(self, real, z_d, z_g, cond: Condition | None = None, step: int = 0, times: torch.Tensor | None = None):
        """real (B, C, T, H, W) clips, or with `times` (B, K) the K frames of each clip at those times
        (models trained on a few frames per clip: G renders the same times and D is told them); noise
        z_d for D's fakes and z_g for G's; returns the mean losses and D's logits on real and fake."""
        prec, accum, settings = self.precision, self.accum, self.settings
        if len(real) % accum:
            raise ValueError(f"a batch of {len(real)} clips does not split into {accum} equal micro-batches")
        size = len(real) // accum
        parts = [slice(i * size, (i + 1) * size) for i in range(accum)]
        do_penalty = settings.penalty != "none" and step % settings.penalty_every == 0
        pick = lambda x, part: None if x is None else x[part]  # noqa: E731

        self.opt_d.zero_grad(set_to_none=True)
        d_losses, real_out, fake_out = [], [], []
        for i, part in enumerate(parts):
            with _sync_unless(self.D_train, i < accum - 1):
                loss_d, real_logits, fake_logits, total_d = self._d_loss(
                    real[part], z_d[part], pick(cond, part), do_penalty, pick(times, part)
                )
                prec.backward(total_d / accum, prec.scaler_d)
            d_losses.append(loss_d.detach())
            real_out.append(real_logits.detach())
            fake_out.append(fake_logits.detach())
        prec.step(self.opt_d, prec.scaler_d)

        # Generator step: D's weights are frozen and used unwrapped (no DDP sync for D here).
        _module(self.D).requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        g_losses = []
        for i, part in enumerate(parts):
            with _sync_unless(self.G_train, i < accum - 1):
                loss_g, total_g = self._g_loss(z_g[part], pick(cond, part), pick(times, part))
                prec.backward(total_g / accum, prec.scaler_g)
            g_losses.append(loss_g.detach())
        prec.step(self.opt_g, prec.scaler_g)
        _module(self.D).requires_grad_(True)
        return torch.stack(d_losses).mean(), torch.stack(g_losses).mean(), torch.cat(real_out), torch.cat(fake_out)


def sparse_times(batch: int, frames: int, k: int, seed: int, step: int) -> torch.Tensor:
    """(batch, k) sorted distinct frame indices in [0, frames) per clip, a pure function of (seed, step)."""
    rng = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, 7]).generate_state(1)[0]))
    return torch.rand(batch, frames, generator=rng).argsort(dim=1)[:, :k].sort(dim=1).values


def take_frames(clips: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """clips (B, C, T, H, W) at integer frame times (B, K) -> (B, C, K, H, W)."""
    B, C, _, H, W = clips.shape
    index = times.long().to(clips.device).view(B, 1, -1, 1, 1).expand(B, C, -1, H, W)
    return clips.gather(2, index)


class GANTask(Task):
    """Generator + discriminator + EMA generator, trained with `GANStep`; DDP across torchrun ranks."""

    distributed = True
    progress_keys = {"d": "loss_d", "g": "loss_g"}
    divergence_hint = "Lower the learning rate or turn on spectral_norm."

    def __init__(self, ctx: LoopContext):
        super().__init__(ctx)
        cfg, info, tc = ctx.cfg, ctx.info, ctx.cfg.train
        if tc.batch_size % (info.world * tc.grad_accum):
            raise ValueError(
                f"batch_size {tc.batch_size} must be divisible by the number of processes ({info.world}) times grad_accum ({tc.grad_accum})"
            )
        self.local_batch = tc.batch_size // info.world
        self.lo, self.hi = info.rank * self.local_batch, (info.rank + 1) * self.local_batch
        self.plan = resolve_speed(tc, info.device, width=cfg.model.max_channels)
        G, D = build_model(cfg.model)
        if cfg.loss.mask_l1 and "mask" not in getattr(G, "extra_outputs", ()):
            raise ValueError(
                f"loss.mask_l1 is set but {cfg.model.name} draws no mask; it applies to videogan-2stream and sprites: "
                "remove it or change the model"
            )
        G.to(info.device)
        D.to(info.device)
        if self.plan.channels_last:
            to_channels_last(G)
            to_channels_last(D)
        if self.plan.dtype is not None and info.world > 1:  # cross-process BatchNorm sums its statistics itself
            fp32_batch_statistics(G)
            fp32_batch_statistics(D)
        self.G, self.D = G, D
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        self.opt_g = make_adam(G.parameters(), tc.lr_g, tc.betas, self.plan)
        self.opt_d = make_adam(D.parameters(), tc.lr_d, tc.betas, self.plan)
        self.prec = StepPrecision(self.plan)
        self.settings = StepSettings.from_config(cfg.loss, tc.seed, clips=len(ctx.data))
        if cfg.loss.augment.strip() == "auto" and info.is_main:
            ctx.log(f"augment: auto -> {self.settings.augment or 'none'} ({len(ctx.data)} training clips)")
        self.sparse = getattr(D, "k", None)  # frames per clip D judges (None: the whole clip)
        self.noise = torch.Generator().manual_seed(tc.seed + 1)  # same stream on every rank; each takes its slice
        self.fixed_z = torch.randn(tc.num_samples, G.z_dim, generator=torch.Generator().manual_seed(tc.seed + 2))
        if ctx.text_table is not None and ctx.resume_from is None:  # on resume the checkpoint holds them
            standardise_text([G, self.G_ema, D], ctx.text_table)
        # Sample grids and the diversity monitor: the dataset's first clips as conditions and real reference.
        ref_real, self.fixed_cond = reference_batch(cfg.model.condition, ctx.data, tc.num_samples, ctx.text_table)
        self.real_distance = diversity(ref_real).mean_distance
        self.collapsed_logs = 0
        self.updates, self.calibrated = 0, None  # G_ema's BatchNorm statistics match its weights after update `calibrated`

    def describe(self) -> str:
        return self.plan.describe(self.local_batch // self.cfg.train.grad_accum)

    def load(self, checkpoint: Path, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.G.load_state_dict(load_weights(checkpoint, "generator"))
        self.G_ema.load_state_dict(load_weights(checkpoint, "generator_ema"))
        self.D.load_state_dict(load_weights(checkpoint, "discriminator"))
        ckpt.optimizer_from_flat(self.opt_g, "opt_g", tensors, state["opt_g"])
        ckpt.optimizer_from_flat(self.opt_d, "opt_d", tensors, state["opt_d"])
        self.noise.set_state(tensors["rng.noise"])
        self.prec.load_state_dict(state.get("loss_scalers", {}))

    def begin(self, step: int) -> None:
        info, tc, G, D = self.ctx.info, self.cfg.train, self.G, self.D
        ddp_devices = [info.device.index] if info.device.type == "cuda" else None  # one GPU per process
        if info.world > 1 and self.plan.channels_last and any(p.dim() == 5 and p.shape[1] == 1 for p in D.parameters()):
            # Grey clips: D's first conv has one input channel, whose channels-last gradient differs from the
            # bucket only in the stride of a size-1 dimension (the same memory); DDP warns about it anyway.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        G_train = DDP(G, device_ids=ddp_devices) if info.world > 1 else G
        D_train = DDP(D, device_ids=ddp_devices) if info.world > 1 else D
        # torch.compile (opt-in): every way the step calls G and D; a failure turns the run back to eager.
        compiler = Compiler(self.plan.compile, self.ctx.log if info.is_main else (lambda s: None))
        G_run, D_run = compiler(G), compiler(D)
        self.gan_step = GANStep(
            G_run, D_run, self.opt_g, self.opt_d, self.settings,
            G_train=G_run if G_train is G else compiler(G_train), D_train=D_run if D_train is D else compiler(D_train),
            precision=self.prec, accum=tc.grad_accum,
        )  # fmt: skip
        order = BatchOrder(len(self.ctx.data), tc.batch_size, tc.seed)
        workers = default_loader_workers(info.device, tc.loader_workers)
        loader = ClipLoader(
            self.ctx.data,
            order.indices,
            self.lo,
            self.hi,
            start=step,
            stop=tc.steps,
            workers=workers,
            pin_memory=info.device.type == "cuda",
        )
        self.batches = iter(loader)

    def step(self, step: int) -> dict:
        info, tc, cfg = self.ctx.info, self.cfg.train, self.cfg
        idx, clips, labels = next(self.batches)
        real = to_model(clips.to(info.device, non_blocking=True))  # uint8 until the device: 4x less to copy
        text = None if self.ctx.text_table is None else self.ctx.text_table[idx].to(info.device)
        cond = batch_condition(cfg.model.condition, real, labels.to(info.device), text)
        z_d = torch.randn(tc.batch_size, self.G.z_dim, generator=self.noise)[self.lo : self.hi].to(info.device)
        z_g = torch.randn(tc.batch_size, self.G.z_dim, generator=self.noise)[self.lo : self.hi].to(info.device)
        times = None
        if self.sparse:
            times = sparse_times(tc.batch_size, cfg.model.frames, self.sparse, tc.seed, step)[self.lo : self.hi].to(info.device)
            real = take_frames(real, times)
        if self.plan.channels_last:
            real = real.contiguous(memory_format=torch.channels_last_3d)
        factor = self.lr_scale(step)
        for opt, base in ((self.opt_g, tc.lr_g), (self.opt_d, tc.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        # Augmentation draws: a fresh stream per (seed, step, rank), so ranks augment differently and a
        # resumed run (on any number of processes) needs no saved augmentation state.
        self.settings.aug_rng.manual_seed(stream_seed(tc.seed, step, info.rank))
        loss_d, loss_g, real_logits, fake_logits = self.gan_step(real, z_d, z_g, cond, step, times=times)
        ema_update(self.G_ema, self.G, ema_beta(tc.ema_beta, step))
        self.updates += 1
        return {
            "loss_d": loss_d,
            "loss_g": loss_g,
            "d_real": torch.sigmoid(real_logits).mean(),
            "d_fake": torch.sigmoid(fake_logits).mean(),
        }

    STANDING_PASSES = 2  # forward passes of 16 or more clips for G_ema's BatchNorm statistics

    def ema(self) -> torch.nn.Module:
        """The EMA generator with BatchNorm statistics recomputed for its weights (common.standing_statistics),
        once per update and only when it is used: sample grids, the monitor, scores, checkpoints. The
        noise is the same every time, so a resumed run saves the same weights as an uninterrupted one."""
        if self.calibrated != self.updates:
            device, tc = self.ctx.info.device, self.cfg.train
            noise = torch.Generator().manual_seed(tc.seed + 3)
            n = -(-16 // len(self.fixed_z)) * len(self.fixed_z)  # at least 16 clips a pass: the grid's conditions, repeated
            cond = None if self.fixed_cond is None else self.fixed_cond[torch.arange(n) % len(self.fixed_z)].to(device)
            z = torch.randn(self.STANDING_PASSES, n, self.G.z_dim, generator=noise).to(device)
            standing_statistics(self.G_ema, lambda i: self.G_ema(z[i], cond), self.STANDING_PASSES)
            self.calibrated = self.updates
        return self.G_ema

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"generator": self.G.state_dict(), "generator_ema": self.ema().state_dict(), "discriminator": self.D.state_dict()}

    def checkpoint(self) -> tuple[dict, dict, dict]:
        g_t, g_meta = ckpt.optimizer_to_flat(self.opt_g, "opt_g")
        d_t, d_meta = ckpt.optimizer_to_flat(self.opt_d, "opt_d")
        weights = self.weights()
        state = {"opt_g": g_meta, "opt_d": d_meta, "precision": self.plan.precision, "loss_scalers": self.prec.state_dict()}
        return weights, {**g_t, **d_t, "rng.noise": self.noise.get_state()}, state

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        device = self.ctx.info.device
        cond = None if self.fixed_cond is None else self.fixed_cond.to(device)
        return self.ema()(self.fixed_z.to(device), cond).float().cpu()

    def monitor(self, step: int) -> tuple[dict, str | None]:
        tc = self.cfg.train
        if tc.num_samples < 2:
            return {}, None
        div = diversity(self.samples(), reference_distance=self.real_distance)
        warning = collapse_warning(div, self.real_distance) if step > tc.warmup_collapse_steps else None
        # Say it when it starts, then every 4th reading while it lasts (every 200 steps by default): not every line.
        self.collapsed_logs = self.collapsed_logs + 1 if warning else 0
        return div.as_dict() | {"real_diversity": self.real_distance}, warning if self.collapsed_logs % 4 == 1 else None

    @property
    def eval_generator(self) -> torch.nn.Module:
        return self.ema()
