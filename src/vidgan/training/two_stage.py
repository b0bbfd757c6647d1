"""Training the two-stage generator: stage 1 the VQ-VAE (`--model vqvae`), stage 2 the prior (`--model videogpt`).

Same conventions as the GAN trainer (vidgan.training.loop): a run dir with config.json,
checkpoints/step_*/ (safetensors + state.json, vidgan.training.checkpoint), log.jsonl, sample grids
in samples/, exact resume (batch order and restart draws are functions of (seed, step); optimizer
and RNG states are saved), a time budget, a progress bar and a Ctrl-C that finishes the step and
checkpoints. One process (no DDP).

A prior's checkpoint is self-contained: generator.safetensors / generator_ema.safetensors hold the
whole TwoStageGenerator (prior + a copy of the VQ-VAE it was trained on), and config.json records
that VQ-VAE's settings, run folder and step, so moving or deleting the VQ-VAE run breaks nothing.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidgan.config import RunConfig
from vidgan.data.clips import ClipDataset
from vidgan.data.video_io import to_model, to_uint8, write_grid
from vidgan.models.layers import Condition, standardise_text
from vidgan.models.transformer import TwoStageGenerator
from vidgan.models.vqvae import VQVAE, PatchDiscriminator, psnr, vqvae_loss
from vidgan.training import checkpoint as ckpt
from vidgan.training import losses
from vidgan.training.loop import (
    BatchOrder,
    NonFiniteLossError,
    RunDirError,
    _main_thread,
    _truncate_log,
    batch_condition,
    caption_embeddings,
    ema_update,
    lr_factor,
    pick_device,
    stream_seed,
)

TWO_STAGE_MODELS = ("vqvae", "videogpt")
TOKENS_FILE, TOKENS_INFO = "tokens.npy", "tokens.json"


@dataclass
class TwoStageResult:
    run_dir: Path
    step: int
    stopped: str  # "steps" | "time_budget" | "interrupted"
    loss: float
    clips_per_s: float
    psnr: float | None = None  # vqvae: reconstruction PSNR of the last logged batch

    def summary(self) -> str:
        extra = "" if self.psnr is None else f", recon PSNR {self.psnr:.2f} dB"
        return f"{self.run_dir}: step {self.step}, loss {self.loss:.4f}{extra}"


# ----------------------------------------------------------------------------- shared plumbing


def _fill_from_data(cfg: RunConfig, data: ClipDataset) -> RunConfig:
    cfg = cfg.model_copy(deep=True)
    cfg.model.frames, cfg.model.resolution = data.frames, data.size
    cfg.model.channels, cfg.model.num_classes, cfg.model.classes = data.channels, data.num_classes, list(data.classes)
    cfg.model.fps = float(data.fps or 8.0)
    return cfg


def _resume_point(cfg: RunConfig, run_dir: Path, resume: bool) -> Path | None:
    saved = run_dir / "config.json"
    if not resume:
        if saved.exists():
            raise RunDirError(f"{run_dir}: already holds a run; pass --resume to continue it, or choose another --out")
        return None
    if not saved.exists():
        raise RunDirError(f"{run_dir}: no run to resume (no config.json); start it without --resume")
    old = RunConfig.load(saved)
    if old.model != cfg.model or old.vq.model_dump(exclude={"vqvae_run", "tokens"}) != cfg.vq.model_dump(exclude={"vqvae_run", "tokens"}):
        raise RunDirError(f"{run_dir}: the model/vq settings differ from the saved run's config.json; resume with the saved config")
    return ckpt.latest_checkpoint(run_dir)


class Session:
    """What both stages' loops share: run dir, log.jsonl, progress bar, time budget, Ctrl-C, checkpoints."""

    def __init__(self, cfg: RunConfig, run_dir: Path, step: int, elapsed_before: float, progress: bool, log):
        self.cfg, self.run_dir, self.step, self.log = cfg, run_dir, step, log
        self.elapsed_before = elapsed_before
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
        _truncate_log(run_dir / "log.jsonl", step)
        self.interrupted = False
        self._old_handler = signal.signal(signal.SIGINT, self._on_sigint) if _main_thread() else None
        tc = cfg.train
        self.bar = tqdm(
            total=tc.steps if tc.time_budget is None else None,
            initial=step,
            desc=f"train {cfg.model.name}",
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
        )
        self.t_start = self.t_log = time.monotonic()
        self.clips_seen, self.clips_per_s, self.stopped = 0, 0.0, "steps"

    def _on_sigint(self, signum, frame):  # first Ctrl-C: finish the step and checkpoint; second: abort
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def end_step(self, record: dict) -> bool:
        """Count the step, log it when due; True when training must stop (budget, Ctrl-C)."""
        tc = self.cfg.train
        self.step += 1
        self.clips_seen += tc.batch_size
        self.bar.update(1)
        if not np.isfinite(record["loss"]):
            last = ckpt.latest_checkpoint(self.run_dir)
            raise NonFiniteLossError(
                f"step {self.step}: non-finite loss; training stopped. Last good checkpoint: {last or 'none'}. Lower vq.lr."
            )
        over_budget = tc.time_budget is not None and time.monotonic() - self.t_start > tc.time_budget
        stop = over_budget or self.interrupted
        if self.step % tc.log_every == 0 or self.step == tc.steps or stop:  # the last step is always logged
            now = time.monotonic()
            self.clips_per_s = self.clips_seen / max(now - self.t_log, 1e-9)
            self.t_log, self.clips_seen = now, 0
            record = {"step": self.step, **record, "clips_per_s": self.clips_per_s}
            left = {} if tc.time_budget is None else {"budget_left": f"{max(0.0, tc.time_budget - (now - self.t_start)):.0f}s"}
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", clips_s=f"{self.clips_per_s:.1f}", **left)
            with open(self.run_dir / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if stop:
            self.stopped = "interrupted" if self.interrupted else "time_budget"
            return True
        return False

    def close(self) -> None:
        self.bar.close()
        if self._old_handler is not None:
            signal.signal(signal.SIGINT, self._old_handler)
        if self.stopped != "steps":
            self.log(f"stopped at step {self.step} ({self.stopped.replace('_', ' ')}); checkpoint saved, continue with --resume")


def _save(session: Session, weights: dict, opt: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None = None) -> None:
    tensors, meta = ckpt.optimizer_to_flat(opt, "opt")
    state = {"elapsed": session.elapsed(), "opt": meta, "world_size": 1}
    if opt_d is not None:  # the VQ-VAE's adversarial critic
        tensors_d, state["opt_d"] = ckpt.optimizer_to_flat(opt_d, "opt_d")
        tensors.update(tensors_d)
    tensors["rng.torch"] = torch.get_rng_state()
    ckpt.save_checkpoint(session.run_dir, session.step, weights, tensors, state, keep=session.cfg.train.keep_checkpoints)


def _restore(resume_from: Path, opt: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None = None) -> tuple[int, float]:
    state, tensors = ckpt.load_state(resume_from)
    ckpt.optimizer_from_flat(opt, "opt", tensors, state["opt"])
    if opt_d is not None:  # the run's config.json pins vq.adversarial, so the critic's state is there
        ckpt.optimizer_from_flat(opt_d, "opt_d", tensors, state["opt_d"])
    torch.set_rng_state(tensors["rng.torch"])
    return state["step"], state["elapsed"]


def _set_lr(opt: torch.optim.Optimizer, cfg: RunConfig, step: int) -> None:
    factor = lr_factor(cfg.train.lr_schedule, step, cfg.train.steps, cfg.train.warmup_steps)
    for group in opt.param_groups:
        group["lr"] = cfg.vq.lr * factor


def train_two_stage(
    cfg: RunConfig, run_dir: str | Path, resume: bool = False, device: str | None = None, progress: bool = True, log=print
) -> TwoStageResult:
    """`vidgan train DATA --model vqvae` (stage 1) or `--model videogpt --vqvae RUN` (stage 2)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the two-stage models (vqvae, videogpt) train on one process; run `vidgan train` without torchrun")
    if cfg.model.name not in TWO_STAGE_MODELS:
        raise ValueError(f"{cfg.model.name!r} is not a two-stage model ({', '.join(TWO_STAGE_MODELS)})")
    if cfg.vq.recon_loss not in ("l1", "l2"):
        raise ValueError(f"unknown vq.recon_loss {cfg.vq.recon_loss!r}; choose l1 or l2")
    if cfg.train.eval_every and cfg.model.name == "vqvae":
        raise ValueError(
            "train.eval_every scores generators: give it to the prior (--model videogpt); the VQ-VAE logs its reconstruction PSNR"
        )
    lr_factor(cfg.train.lr_schedule, 0, cfg.train.steps, cfg.train.warmup_steps)  # bad schedule names fail now
    dev = pick_device(device)
    data = ClipDataset(cfg.data)
    cfg = _fill_from_data(cfg, data)
    run_dir = Path(run_dir)
    if cfg.model.name == "vqvae":
        return _train_vqvae(cfg, data, run_dir, resume, dev, progress, log)
    return _train_prior(cfg, data, run_dir, resume, dev, progress, log)


# ----------------------------------------------------------------------------- stage 1: VQ-VAE


def _train_vqvae(cfg: RunConfig, data: ClipDataset, run_dir: Path, resume: bool, dev, progress: bool, log) -> TwoStageResult:
    tc, vq = cfg.train, cfg.vq
    if cfg.model.condition != "none":
        raise ValueError("the VQ-VAE is unconditional; give the condition to the prior (--model videogpt --condition ...)")
    resume_from = _resume_point(cfg, run_dir, resume)
    torch.manual_seed(tc.seed)
    model = VQVAE.from_config(cfg.model, vq).to(dev)
    model.grid(data.frames, data.size, data.size)
    opt = torch.optim.Adam(model.parameters(), lr=vq.lr, betas=vq.betas, weight_decay=vq.weight_decay)
    critic = opt_d = None
    if vq.adversarial < 0:
        raise ValueError(f"vq.adversarial must be >= 0 (0 turns the patch adversarial term off), got {vq.adversarial}")
    if vq.adversarial > 0:
        critic = PatchDiscriminator(cfg.model.channels, vq.adversarial_width, layers=max(1, min(3, int(math.log2(data.size)) - 1))).to(dev)
        opt_d = torch.optim.Adam(critic.parameters(), lr=vq.lr, betas=(0.5, 0.9))
    step, elapsed = 0, 0.0
    if resume_from is not None:
        model.load_state_dict(ckpt.load_weights(resume_from, "vqvae"))
        if critic is not None:
            critic.load_state_dict(ckpt.load_weights(resume_from, "critic"))
        step, elapsed = _restore(resume_from, opt, opt_d)
        log(f"resuming {run_dir} from step {step}")

    def weights() -> dict:
        return {"vqvae": model.state_dict(), **({} if critic is None else {"critic": critic.state_dict()})}

    ref = to_model(data.get_batch([i % len(data) for i in range(tc.num_samples)])[0]).to(dev)
    order = BatchOrder(len(data), tc.batch_size, tc.seed)
    session = Session(cfg, run_dir, step, elapsed, progress, log)
    rng = torch.Generator()
    loss_v, last_psnr = float("nan"), None

    def write_samples() -> None:  # top: real clips, bottom: their reconstructions
        model.eval()
        with torch.no_grad():
            recon = model.decode(model.encode(ref))
        model.train()
        write_grid(run_dir / "samples" / f"step_{session.step:09d}.gif", to_uint8(torch.cat([ref, recon]).cpu()), fps=cfg.model.fps)

    try:
        model.train()
        while session.step < tc.steps:
            clips, _ = data.get_batch(order.indices(session.step))
            x = to_model(clips).to(dev)
            _set_lr(opt, cfg, session.step)
            rng.manual_seed(stream_seed(tc.seed, session.step, 0))  # codebook init / restart draws: resumable
            recon, q = model(x, rng)
            loss, rec = vqvae_loss(x, recon, q, vq.recon_loss, vq.commitment)
            adversarial = critic is not None and session.step >= vq.adversarial_start
            if adversarial:  # hinge generator term: the critic's patches should call the reconstruction real
                g_adv = losses.g_loss_hinge(critic(recon))
                loss = loss + vq.adversarial * g_adv
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            adv_record = {}
            if adversarial:
                d_real, d_fake = critic(x), critic(recon.detach())
                d_loss = losses.d_loss_hinge(d_real, d_fake)
                opt_d.zero_grad(set_to_none=True)  # also drops the grads the generator term left on the critic
                d_loss.backward()
                opt_d.step()
                adv_record = {
                    "adv_g": g_adv.item(),
                    "adv_d": d_loss.item(),
                    "critic_real": d_real.mean().item(),
                    "critic_fake": d_fake.mean().item(),
                }
            loss_v, last_psnr = loss.item(), psnr(x, recon.detach())
            record = {
                "loss": loss_v,
                "recon": rec.item(),
                "commitment": q.commitment.item(),
                "psnr": last_psnr,
                "perplexity": q.perplexity.item(),
                "codes_used": int(q.used),
                "ema_updates": int(model.codebook.ema_updates),
                "restarts": int(model.codebook.restarts),
                **adv_record,
            }
            stop = session.end_step(record)
            if session.step % tc.sample_every == 0:
                write_samples()
            if stop:
                break
            if session.step % tc.checkpoint_every == 0:
                _save(session, weights(), opt, opt_d)
        if ckpt.latest_checkpoint(run_dir) != ckpt.checkpoint_dir(run_dir, session.step) or session.stopped != "steps":
            _save(session, weights(), opt, opt_d)
        if session.step % tc.sample_every:
            write_samples()
    finally:
        session.close()
    return TwoStageResult(run_dir, session.step, session.stopped, loss_v, session.clips_per_s, last_psnr)


def load_vqvae(run: str | Path, step: int | None = None, device="cpu") -> tuple[VQVAE, RunConfig, int]:
    """A stage-1 run's VQ-VAE (eval mode), its config and the checkpoint step."""
    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no config.json); pass the folder of a `vidgan train --model vqvae` run")
    cfg = RunConfig.load(run / "config.json")
    if cfg.model.name != "vqvae":
        raise ValueError(f"{run}: is a {cfg.model.name} run, not a VQ-VAE; train one with `vidgan train DATA --model vqvae --out RUN`")
    folder = ckpt.checkpoint_dir(run, step) if step is not None else ckpt.latest_checkpoint(run)
    if folder is None or not folder.is_dir():
        raise ckpt.CheckpointError(f"{run}: no checkpoint" + (f" for step {step}" if step is not None else "") + "; train the VQ-VAE first")
    model = VQVAE.from_config(cfg.model, cfg.vq)
    model.load_state_dict(ckpt.load_weights(folder, "vqvae"))
    return model.to(device).eval(), cfg, int(folder.name.split("_")[-1])


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


def _train_prior(cfg: RunConfig, data: ClipDataset, run_dir: Path, resume: bool, dev, progress: bool, log) -> TwoStageResult:
    tc, vq = cfg.train, cfg.vq
    if not vq.vqvae_run:
        raise ValueError("the videogpt prior learns a VQ-VAE's tokens: pass --vqvae RUN (a `vidgan train --model vqvae` run)")
    if resume:  # a resumed prior keeps the VQ-VAE settings it recorded (and its weights are in its checkpoint)
        if (run_dir / "config.json").exists():
            cfg = cfg.model_copy(update={"vq": RunConfig.load(run_dir / "config.json").vq}, deep=True)
        resume_from = _resume_point(cfg, run_dir, True)
    else:
        resume_from = _resume_point(cfg, run_dir, False)
    if resume_from is None:
        vqvae, vq_cfg, at = load_vqvae(vq.vqvae_run, vq.vqvae_step)
        if vq_cfg.model.channels != cfg.model.channels or vq_cfg.model.resolution != cfg.model.resolution:
            raise ValueError(
                f"{cfg.data}: clips are {cfg.model.resolution}px x {cfg.model.channels} channels, the VQ-VAE in {vq.vqvae_run} "
                f"was trained on {vq_cfg.model.resolution}px x {vq_cfg.model.channels}"
            )
        stage1 = {
            k: getattr(vq_cfg.vq, k)
            for k in (
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
        }
        cfg.vq = cfg.vq.model_copy(update={**stage1, "vqvae_run": str(Path(vq.vqvae_run).resolve()), "vqvae_step": at})
    vq = cfg.vq
    torch.manual_seed(tc.seed)
    gen = TwoStageGenerator(cfg.model, cfg.vq)
    if resume_from is None:
        gen.vqvae.load_state_dict(vqvae.state_dict())
    gen.vqvae.requires_grad_(False).eval()
    text_table = caption_embeddings(data) if cfg.model.condition == "text" else None
    if text_table is not None and resume_from is None:
        standardise_text([gen], text_table)
    gen.to(dev)
    gen_ema = copy.deepcopy(gen).eval().requires_grad_(False)
    opt = torch.optim.AdamW(gen.prior.parameters(), lr=vq.lr, betas=vq.betas, weight_decay=vq.weight_decay)
    step, elapsed = 0, 0.0
    if resume_from is not None:
        gen.load_state_dict(ckpt.load_weights(resume_from, "generator"))
        gen_ema.load_state_dict(ckpt.load_weights(resume_from, "generator_ema"))
        step, elapsed = _restore(resume_from, opt)
        log(f"resuming {run_dir} from step {step}")

    # The token grids of the whole dataset (and first-frame prefixes), once: from `vidgan tokenize` when
    # its tokens match this dataset and VQ-VAE, else encoded here.
    tokens = None
    for folder in [Path(vq.tokens)] if vq.tokens else [Path(vq.vqvae_run) / "tokens"]:
        tokens = _matching_tokens(folder, data, cfg.vq.vqvae_step)
        if tokens is None and vq.tokens:
            raise ValueError(
                f"{folder}: no tokens of {data.root} made by the VQ-VAE step {cfg.vq.vqvae_step}; run `vidgan tokenize {vq.vqvae_run} {data.root} --out {folder}`"
            )
    if tokens is None:
        log(f"encoding {len(data)} clips with the VQ-VAE (save this next time: vidgan tokenize {vq.vqvae_run} {data.root})")
        tokens = encode_dataset(gen.vqvae, data, progress=progress, device=dev)
    tokens = torch.from_numpy(tokens.astype(np.int64)).flatten(1)
    prefixes = None
    if cfg.model.condition == "first-frame":
        frames = [to_model(data.get_batch(list(range(i, min(len(data), i + 64))))[0])[:, :, 0] for i in range(0, len(data), 64)]
        prefixes = torch.cat([gen.first_frame_tokens(f.to(dev)).cpu() for f in frames])

    ref_index = [i % len(data) for i in range(tc.num_samples)]
    ref_real = to_model(data.get_batch(ref_index)[0])
    ref_labels = torch.arange(tc.num_samples) % max(1, data.num_classes)
    fixed_cond = batch_condition(cfg.model.condition, ref_real, ref_labels, None if text_table is None else text_table[ref_index])
    fixed_z = torch.randn(tc.num_samples, gen.z_dim, generator=torch.Generator().manual_seed(tc.seed + 2))
    order = BatchOrder(len(data), tc.batch_size, tc.seed)
    evaluator = None
    if tc.eval_every:  # quality metrics every N steps, appended to RUN/metrics.jsonl, as for the GANs
        from vidgan.metrics.evaluate import TrainingEval, score_line

        evaluator = TrainingEval(cfg, run_dir, 0, 1, dev, text_table)
    session = Session(cfg, run_dir, step, elapsed, progress, log)
    loss_v = float("nan")

    def write_samples() -> None:
        with torch.no_grad():
            clips = gen_ema(fixed_z.to(dev), None if fixed_cond is None else fixed_cond.to(dev)).cpu()
        write_grid(run_dir / "samples" / f"step_{session.step:09d}.gif", to_uint8(clips), fps=cfg.model.fps)

    def save() -> None:
        _save(session, {"generator": gen.state_dict(), "generator_ema": gen_ema.state_dict()}, opt)

    try:
        gen.prior.train()
        while session.step < tc.steps:
            idx = order.indices(session.step)
            batch = tokens[idx].to(dev)
            labels = data.labels[idx] if data.num_classes else torch.zeros(len(idx), dtype=torch.long)
            cond = None
            if cfg.model.condition == "class":
                cond = Condition(labels=labels.to(dev))
            elif cfg.model.condition == "text":
                cond = Condition(text=text_table[idx].to(dev))
            elif cfg.model.condition != "none" and cfg.model.condition != "first-frame":
                raise ValueError(f"unknown condition {cfg.model.condition!r}; use none, class, text or first-frame")
            prefix = None if prefixes is None else prefixes[idx].to(dev)
            _set_lr(opt, cfg, session.step)
            loss = gen.prior.loss(batch, cond, prefix)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema_update(gen_ema, gen, min(tc.ema_beta, (1 + session.step) / (10 + session.step)))
            loss_v = loss.item()
            stop = session.end_step({"loss": loss_v, "bits_per_token": loss_v / np.log(2)})
            if session.step % tc.sample_every == 0:
                write_samples()
            if evaluator is not None and session.step % tc.eval_every == 0:
                scores = evaluator(gen_ema, session.step)
                with tqdm.external_write_mode():
                    log(score_line(session.step, scores))
            if stop:
                break
            if session.step % tc.checkpoint_every == 0:
                save()
        if ckpt.latest_checkpoint(run_dir) != ckpt.checkpoint_dir(run_dir, session.step) or session.stopped != "steps":
            save()
        if session.step % tc.sample_every:
            write_samples()
    finally:
        session.close()
    return TwoStageResult(run_dir, session.step, session.stopped, loss_v, session.clips_per_s)
