"""The two-stage generator's training tasks: stage 1 the VQ-VAE (`--model vqvae`), stage 2 the prior
(`--model videogpt`), run by the one training loop (vidgan.training.loop), plus `vidgan tokenize`.

Exact resume as for the GANs: batch order and codebook-restart draws are functions of (seed, step);
optimizer and RNG states are in the checkpoint. One process (no DDP).

A prior's checkpoint is self-contained: generator.safetensors / generator_ema.safetensors hold the
whole TwoStageGenerator (prior + a copy of the VQ-VAE it was trained on), and config.json records
that VQ-VAE's settings, run folder and step, so moving or deleting the VQ-VAE run breaks nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidgan.conditioning import batch_condition, reference_batch
from vidgan.config import RunConfig
from vidgan.data.clips import ClipDataset
from vidgan.data.video_io import to_model
from vidgan.models.layers import standardise_text
from vidgan.models.registry import build_model
from vidgan.models.vqvae import VQVAE, psnr, vqvae_loss
from vidgan.run import Run, load_weights, step_of
from vidgan.training import checkpoint as ckpt
from vidgan.training import losses
from vidgan.training.common import BatchOrder, LoopContext, Task, ema_beta, ema_update, stream_seed

TOKENS_FILE, TOKENS_INFO = "tokens.npy", "tokens.json"


def _set_lr(opt: torch.optim.Optimizer, cfg: RunConfig, factor: float) -> None:
    for group in opt.param_groups:
        group["lr"] = cfg.vq.lr * factor


class VQVAETask(Task):
    """Stage 1: the VQ-VAE (reconstruction + commitment, optional patch adversarial term)."""

    divergence_hint = "Lower vq.lr."

    @classmethod
    def check(cls, cfg: RunConfig) -> None:
        if cfg.vq.recon_loss not in ("l1", "l2"):
            raise ValueError(f"unknown vq.recon_loss {cfg.vq.recon_loss!r}; choose l1 or l2")
        if cfg.train.eval_every:
            raise ValueError(
                "train.eval_every scores generators: give it to the prior (--model videogpt); the VQ-VAE logs its reconstruction PSNR"
            )
        if cfg.model.condition != "none":
            raise ValueError("the VQ-VAE is unconditional; give the condition to the prior (--model videogpt --condition ...)")
        if cfg.vq.adversarial < 0:
            raise ValueError(f"vq.adversarial must be >= 0 (0 turns the patch adversarial term off), got {cfg.vq.adversarial}")

    def __init__(self, ctx: LoopContext):
        super().__init__(ctx)
        cfg, data, dev = ctx.cfg, ctx.data, ctx.info.device
        vq = cfg.vq
        model, critic = build_model(cfg.model, vq)
        self.model, self.critic, self.opt_d = model.to(dev), critic, None
        self.model.grid(data.frames, data.size, data.size)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=vq.lr, betas=vq.betas, weight_decay=vq.weight_decay)
        if critic is not None:
            self.critic = critic.to(dev)
            self.opt_d = torch.optim.Adam(critic.parameters(), lr=vq.lr, betas=(0.5, 0.9))
        self.ref = reference_batch("none", data, cfg.train.num_samples, None)[0].to(dev)
        self.order = BatchOrder(len(data), cfg.train.batch_size, cfg.train.seed)
        self.rng = torch.Generator()
        self.model.train()

    def load(self, checkpoint: Path, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(load_weights(checkpoint, "vqvae"))
        ckpt.optimizer_from_flat(self.opt, "opt", tensors, state["opt"])
        if self.critic is not None:  # the run's config.json pins vq.adversarial, so the critic's state is there
            self.critic.load_state_dict(load_weights(checkpoint, "critic"))
            ckpt.optimizer_from_flat(self.opt_d, "opt_d", tensors, state["opt_d"])

    def step(self, step: int) -> dict:
        cfg, vq, model, critic = self.cfg, self.cfg.vq, self.model, self.critic
        clips, _ = self.ctx.data.get_batch(self.order.indices(step))
        x = to_model(clips).to(self.ctx.info.device)
        _set_lr(self.opt, cfg, self.lr_scale(step))
        self.rng.manual_seed(stream_seed(cfg.train.seed, step, 0))  # codebook init / restart draws: resumable
        recon, q = model(x, self.rng)
        loss, rec = vqvae_loss(x, recon, q, vq.recon_loss, vq.commitment)
        adversarial = critic is not None and step >= vq.adversarial_start
        if adversarial:  # hinge generator term: the critic's patches should call the reconstruction real
            g_adv = losses.g_loss_hinge(critic(recon))
            loss = loss + vq.adversarial * g_adv
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        record = {}
        if adversarial:
            d_real, d_fake = critic(x), critic(recon.detach())
            d_loss = losses.d_loss_hinge(d_real, d_fake)
            self.opt_d.zero_grad(set_to_none=True)  # also drops the grads the generator term left on the critic
            d_loss.backward()
            self.opt_d.step()
            record = {
                "adv_g": g_adv.item(),
                "adv_d": d_loss.item(),
                "critic_real": d_real.mean().item(),
                "critic_fake": d_fake.mean().item(),
            }
        return {
            "loss": loss.item(), "recon": rec.item(), "commitment": q.commitment.item(), "psnr": psnr(x, recon.detach()),
            "perplexity": q.perplexity.item(), "codes_used": int(q.used), "ema_updates": int(model.codebook.ema_updates),
            "restarts": int(model.codebook.restarts), **record,
        }  # fmt: skip

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        weights = {"vqvae": self.model.state_dict()}
        if self.critic is not None:
            weights["critic"] = self.critic.state_dict()
        return weights

    def checkpoint(self) -> tuple[dict, dict, dict]:
        tensors, meta = ckpt.optimizer_to_flat(self.opt, "opt")
        weights, state = self.weights(), {"opt": meta}
        if self.critic is not None:
            tensors_d, state["opt_d"] = ckpt.optimizer_to_flat(self.opt_d, "opt_d")
            tensors.update(tensors_d)
        return weights, tensors, state

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """Real clips on top, their reconstructions below."""
        self.model.eval()
        recon = self.model.decode(self.model.encode(self.ref))
        self.model.train()
        return torch.cat([self.ref, recon]).float().cpu()


# ----------------------------------------------------------------------------- tokens


def load_vqvae(run: str | Path, step: int | None = None, device="cpu") -> tuple[VQVAE, RunConfig, int]:
    """A stage-1 run's VQ-VAE (eval mode), its config and the checkpoint step."""
    run = Run(run)
    if not run.exists():
        raise FileNotFoundError(f"{run.root}: not a run folder (no config.json); pass the folder of a `vidgan train --model vqvae` run")
    cfg = run.config()
    if cfg.model.name != "vqvae":
        raise ValueError(f"{run.root}: is a {cfg.model.name} run, not a VQ-VAE; train one with `vidgan train DATA --model vqvae --out RUN`")
    folder = run.checkpoint(step)
    model = VQVAE.from_config(cfg.model, cfg.vq)
    model.load_state_dict(load_weights(folder, "vqvae"))
    return model.to(device).eval(), cfg, step_of(folder)


# ----------------------------------------------------------------------------- tokens


@torch.no_grad()
def encode_dataset(model: VQVAE, data: ClipDataset, batch_size: int = 32, progress: bool = False, device="cpu") -> np.ndarray:
    """Every clip of a prepared dataset -> its token grid, (N, t, h, w) uint16 (int32 for codebooks > 65536)."""
    grid = model.grid(data.frames, data.size, data.size)
    dtype = np.uint16 if model.codebook.size <= 65536 else np.int32
    out = np.zeros((len(data), *grid), dtype)
    for start in tqdm(range(0, len(data), batch_size), desc="tokenize", unit="batch", disable=not progress, dynamic_ncols=True):
        idx = list(range(start, min(len(data), start + batch_size)))
        out[idx] = model.encode(to_model(data.get_batch(idx)[0]).to(device)).cpu().numpy().astype(dtype)
    return out


def tokenize(
    run: str | Path,
    data_dir: str | Path,
    out: str | Path | None = None,
    step: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    device: str = "cpu",
) -> Path:
    """`vidgan tokenize RUN DATA`: write DATA's token grids to OUT (default RUN/tokens): tokens.npy + tokens.json."""
    model, cfg, at = load_vqvae(run, step, device)
    data = ClipDataset(data_dir)
    if data.channels != cfg.model.channels or data.size != cfg.model.resolution:
        raise ValueError(
            f"{data_dir}: clips are {data.size}px x {data.channels} channels, the VQ-VAE in {run} was trained on "
            f"{cfg.model.resolution}px x {cfg.model.channels}; prepare the data at the VQ-VAE's size"
        )
    tokens = encode_dataset(model, data, batch_size, progress, device)
    out = Path(out) if out is not None else Path(run) / "tokens"
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / TOKENS_FILE, tokens)
    info = {
        "data": str(Path(data_dir).resolve()),
        "num_clips": len(data),
        "vqvae_run": str(Path(run).resolve()),
        "vqvae_step": at,
        "grid": list(tokens.shape[1:]),
        "codebook_size": model.codebook.size,
        "dtype": str(tokens.dtype),
        "codes_used": int(len(np.unique(tokens))),
    }
    (out / TOKENS_INFO).write_text(json.dumps(info, indent=1) + "\n")
    return out


def _matching_tokens(folder: Path, data: ClipDataset, vqvae_step: int) -> np.ndarray | None:
    """Tokens in `folder` if they were made from this dataset by this VQ-VAE checkpoint, else None."""
    if not (folder / TOKENS_INFO).is_file():
        return None
    info = json.loads((folder / TOKENS_INFO).read_text())
    if info.get("data") != str(Path(data.root).resolve()) or info.get("num_clips") != len(data) or info.get("vqvae_step") != vqvae_step:
        return None
    return np.load(folder / TOKENS_FILE, allow_pickle=False)


# ----------------------------------------------------------------------------- stage 2: prior


class PriorTask(Task):
    """Stage 2: a causal Transformer over a VQ-VAE's token grids (videogpt)."""

    @classmethod
    def check(cls, cfg: RunConfig) -> None:
        if not cfg.vq.vqvae_run:
            raise ValueError("the videogpt prior learns a VQ-VAE's tokens: pass --vqvae RUN (a `vidgan train --model vqvae` run)")

    @classmethod
    def resumed_config(cls, cfg: RunConfig, run: Run) -> RunConfig:
        """A resumed prior keeps the VQ-VAE settings it recorded (its VQ-VAE weights are in its checkpoint)."""
        return cfg.model_copy(update={"vq": run.config().vq}, deep=True) if run.exists() else cfg

    def __init__(self, ctx: LoopContext):
        super().__init__(ctx)
        cfg, data, dev, tc = ctx.cfg, ctx.data, ctx.info.device, ctx.cfg.train
        if ctx.resume_from is None:
            vqvae, vq_cfg, at = load_vqvae(cfg.vq.vqvae_run, cfg.vq.vqvae_step)
            if vq_cfg.model.channels != cfg.model.channels or vq_cfg.model.resolution != cfg.model.resolution:
                raise ValueError(
                    f"{cfg.data}: clips are {cfg.model.resolution}px x {cfg.model.channels} channels, the VQ-VAE in {cfg.vq.vqvae_run} "
                    f"was trained on {vq_cfg.model.resolution}px x {vq_cfg.model.channels}"
                )
            stage1 = (
                "downsample",
                "width",
                "res_blocks",
                "codebook_size",
                "embed_dim",
                "commitment",
                "ema_decay",
                "restart_threshold",
                "recon_loss",
            )
            update = {k: getattr(vq_cfg.vq, k) for k in stage1} | {"vqvae_run": str(Path(cfg.vq.vqvae_run).resolve()), "vqvae_step": at}
            cfg = cfg.model_copy(deep=True)
            cfg.vq = cfg.vq.model_copy(update=update)
            self.cfg = cfg
            torch.manual_seed(tc.seed)  # the prior's initial weights do not depend on loading the VQ-VAE
        gen = build_model(cfg.model, cfg.vq)[0]
        if ctx.resume_from is None:
            gen.vqvae.load_state_dict(vqvae.state_dict())
        gen.vqvae.requires_grad_(False).eval()
        if ctx.text_table is not None and ctx.resume_from is None:
            standardise_text([gen], ctx.text_table)
        gen.to(dev)
        self.gen, self.gen_ema = gen, copy.deepcopy(gen).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(gen.prior.parameters(), lr=cfg.vq.lr, betas=cfg.vq.betas, weight_decay=cfg.vq.weight_decay)
        self.order = BatchOrder(len(data), tc.batch_size, tc.seed)
        self.fixed_z = torch.randn(tc.num_samples, gen.z_dim, generator=torch.Generator().manual_seed(tc.seed + 2))
        self.fixed_cond = reference_batch(cfg.model.condition, data, tc.num_samples, ctx.text_table)[1]

    def load(self, checkpoint: Path, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.gen.load_state_dict(load_weights(checkpoint, "generator"))
        self.gen_ema.load_state_dict(load_weights(checkpoint, "generator_ema"))
        ckpt.optimizer_from_flat(self.opt, "opt", tensors, state["opt"])

    def begin(self, step: int) -> None:
        """The token grids of the whole dataset (and first-frame prefixes), once: from `vidgan tokenize`
        when its tokens match this dataset and VQ-VAE, else encoded here."""
        cfg, vq, data, dev = self.cfg, self.cfg.vq, self.ctx.data, self.ctx.info.device
        folder = Path(vq.tokens) if vq.tokens else Path(vq.vqvae_run) / "tokens"
        tokens = _matching_tokens(folder, data, vq.vqvae_step)
        if tokens is None and vq.tokens:
            raise ValueError(
                f"{folder}: no tokens of {data.root} made by the VQ-VAE step {vq.vqvae_step}; run `vidgan tokenize {vq.vqvae_run} {data.root} --out {folder}`"
            )
        if tokens is None:
            self.ctx.log(f"encoding {len(data)} clips with the VQ-VAE (save this next time: vidgan tokenize {vq.vqvae_run} {data.root})")
            tokens = encode_dataset(self.gen.vqvae, data, progress=self.ctx.progress, device=dev)
        self.tokens = torch.from_numpy(tokens.astype(np.int64)).flatten(1)
        self.prefixes = None
        if cfg.model.condition == "first-frame":
            frames = [to_model(data.get_batch(list(range(i, min(len(data), i + 64))))[0])[:, :, 0] for i in range(0, len(data), 64)]
            self.prefixes = torch.cat([self.gen.first_frame_tokens(f.to(dev)).cpu() for f in frames])
        self.gen.prior.train()

    def step(self, step: int) -> dict:
        cfg, data, dev = self.cfg, self.ctx.data, self.ctx.info.device
        idx = self.order.indices(step)
        labels = data.labels[idx] if data.num_classes else torch.zeros(len(idx), dtype=torch.long)
        text = None if self.ctx.text_table is None else self.ctx.text_table[idx].to(dev)
        # the first frame enters as a token prefix, not as a Condition
        cond = None if cfg.model.condition == "first-frame" else batch_condition(cfg.model.condition, None, labels.to(dev), text)
        prefix = None if self.prefixes is None else self.prefixes[idx].to(dev)
        _set_lr(self.opt, cfg, self.lr_scale(step))
        loss = self.gen.prior.loss(self.tokens[idx].to(dev), cond, prefix)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        ema_update(self.gen_ema, self.gen, ema_beta(cfg.train.ema_beta, step))
        return {"loss": loss.item(), "bits_per_token": loss.item() / np.log(2)}

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"generator": self.gen.state_dict(), "generator_ema": self.gen_ema.state_dict()}

    def checkpoint(self) -> tuple[dict, dict, dict]:
        tensors, meta = ckpt.optimizer_to_flat(self.opt, "opt")
        return self.weights(), tensors, {"opt": meta}

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        dev = self.ctx.info.device
        return self.gen_ema(self.fixed_z.to(dev), None if self.fixed_cond is None else self.fixed_cond.to(dev)).float().cpu()

    @property
    def eval_generator(self) -> torch.nn.Module:
        return self.gen_ema
