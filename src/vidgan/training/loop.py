"""The training loop: one for every model. What varies is a Task (vidgan.training.common.Task; the
tasks are vidgan.training.gan.GANTask and vidgan.training.two_stage's VQVAETask and PriorTask).

The loop owns the bookkeeping once: the run folder (through vidgan.run.Run), resume, Ctrl-C, the
progress bar, the time budget, log.jsonl and TensorBoard, the non-finite-loss stop, sample grids,
checkpoint cadence and the final save, and the quality-metrics hook. A task owns its networks,
optimizers and data stream: `step(step)` makes one update and returns its scalars;
`checkpoint()` / `load()` say what a checkpoint holds (StyleGAN2-ADA's shape: one training loop,
what varies behind a loss/step object).

Launch on one process with `vidgan train`, or on several with `torchrun --nproc_per_node N -m
vidgan train ...` (tasks that support it: the GANs): the global batch is split across ranks, batch
statistics are synchronised, and only rank 0 writes files. Every source of randomness is either
derived from (seed, step[, rank]) or saved in the checkpoint, so a resumed run continues the exact
run it came from, on any number of processes.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from vidgan.conditioning import caption_embeddings
from vidgan.config import RunConfig
from vidgan.data.clips import ClipDataset
from vidgan.data.video_io import to_uint8
from vidgan.data.video_write import write_grid
from vidgan.health import DivergenceWatch, weights_problem
from vidgan.metrics.evaluate import TrainingEval, score_line
from vidgan.models.registry import model_kind
from vidgan.run import Run, RunDirError, load_state
from vidgan.training.common import DistInfo, LoopContext, NonFiniteLossError, Task, lr_factor, pick_device, setup_distributed
from vidgan.training.gan import GANTask
from vidgan.training.two_stage import PriorTask, VQVAETask

__all__ = ["train", "TrainResult", "NonFiniteLossError", "RunDirError", "TASKS"]

TASKS = {"gan": GANTask, "vqvae": VQVAETask, "prior": PriorTask}  # the registry's model kinds -> how they train


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    stopped: str  # "steps" | "time_budget" | "interrupted"
    record: dict = field(default_factory=dict)  # the scalars of the last step
    clips_per_s: float = 0.0

    def __getattr__(self, name: str):  # result.loss_d, result.psnr, ...: the last step's scalars
        record = self.__dict__.get("record", {})
        if name in record:
            return record[name]
        raise AttributeError(name)

    def summary(self) -> str:
        r = self.record
        if "loss_d" in r:
            return f"{self.run_dir}: step {self.step}, loss D {r['loss_d']:.4f} G {r['loss_g']:.4f}"
        extra = f", recon PSNR {r['psnr']:.2f} dB" if r.get("psnr") is not None else ""
        return f"{self.run_dir}: step {self.step}, loss {r.get('loss', float('nan')):.4f}{extra}"


def fill_from_data(cfg: RunConfig, data: ClipDataset) -> RunConfig:
    """The config with the clip shape and classes of the prepared dataset filled in."""
    return cfg.with_data_shape(data.frames, data.size, data.channels, list(data.classes), data.fps or 8.0)


class Interrupt:
    """First Ctrl-C: finish the step, checkpoint and stop; a second one aborts."""

    def __init__(self):
        self.flag = False
        main = threading.current_thread() is threading.main_thread()
        self._old = signal.signal(signal.SIGINT, self._on_sigint) if main else None

    def _on_sigint(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _reduce(record: dict, stop: bool, info: DistInfo) -> tuple[dict[str, float], bool]:
    """The step's scalars as floats, averaged over ranks, and whether any rank must stop."""
    names = list(record)
    if info.world == 1:
        return {k: float(v) for k, v in record.items()}, stop
    values = torch.stack([torch.as_tensor(record[k], dtype=torch.float32, device=info.device).detach() for k in names])
    stats = torch.cat([values, torch.tensor([float(stop)], device=info.device)])
    dist.all_reduce(stats)  # on the device: nccl reduces GPU tensors only
    stats = stats.cpu()
    return {k: stats[i].item() / info.world for i, k in enumerate(names)}, bool(stats[-1] > 0)


def _start(cfg: RunConfig, run_dir: str | Path, resume: bool, device: str | None, progress: bool, log) -> tuple[Task, int, float]:
    """Everything before the first step: checks, the run folder, the task, the checkpoint resumed from."""
    task_cls = TASKS[model_kind(cfg.model.name)]
    if not task_cls.distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"{cfg.model.name} trains on one process; run `vidgan train` without torchrun")
    tc = cfg.train
    lr_factor(tc.lr_schedule, 0, tc.steps, tc.warmup_steps)  # a bad schedule name fails now, not at step 1
    info = setup_distributed(device) if task_cls.distributed else DistInfo(0, 1, pick_device(device))
    data = ClipDataset(cfg.data)
    cfg = fill_from_data(cfg, data)
    run = Run(run_dir)
    task_cls.check(cfg)
    if resume:
        cfg = task_cls.resumed_config(cfg, run)
    resume_from = run.start(cfg, resume, log=log)
    text_table = caption_embeddings(data) if cfg.model.condition == "text" else None
    torch.manual_seed(tc.seed)  # identical initial weights on every rank
    task = task_cls(LoopContext(cfg, data, run, info, resume_from, text_table, progress, log))
    step, elapsed = 0, 0.0
    if resume_from is not None:
        state, tensors = load_state(resume_from)
        task.load(resume_from, state, tensors)
        torch.set_rng_state(tensors["rng.torch"])
        step, elapsed = state["step"], state["elapsed"]
        task.schedule_steps = state.get("schedule_steps")  # a schedule predicted from a time budget continues
        saved_world = state.get("world_size", info.world)
        moved = f" (saved by {saved_world} processes, continuing on {info.world})" if saved_world != info.world else ""
        log(f"resuming {run.root} from step {step}{moved}")
    elif resume:
        log(f"{run.root}: no checkpoint yet; starting from step 0")
    if info.is_main and task.describe():
        log(task.describe())
    if info.is_main:
        run.save_config(task.cfg)  # a task may record more than it was given (the prior: its VQ-VAE)
        run.truncate_log(step)
    task.begin(step)
    return task, step, elapsed


class _Horizon:
    """A decaying learning-rate schedule in a run that stops on its time budget is planned from where
    the budget ends: after `measured` steps (past `warm` warm-up steps) the step time predicts the
    last step, and the schedule runs to train.decay_past_budget past it (capped by train.steps; rank
    0's prediction on every rank). The prediction is saved with each checkpoint, so a resumed run
    continues the same schedule. `clock` is the training loop's (seconds)."""

    def __init__(self, task: Task, step: int, t_start: float, clock=time.monotonic, warm: int = 5, measured: int = 20):
        self.task, self.t_start, self.warm_at, self.end_at = task, t_start, step + warm, step + warm + measured
        self.clock, self.t_warm = clock, 0.0

    def __call__(self, step: int) -> str | None:
        """What to tell the user once the schedule's end is fixed (None before)."""
        now = self.clock()
        if step == self.warm_at:
            self.t_warm = now
        if step < self.end_at:
            return None
        tc, info = self.task.cfg.train, self.task.ctx.info
        per_step = (now - self.t_warm) / (self.end_at - self.warm_at)
        left = max(0.0, tc.time_budget - (now - self.t_start))
        budget_end = step + max(1, round(left / max(per_step, 1e-9)))
        end = torch.tensor([min(tc.steps, round(budget_end * (1 + tc.decay_past_budget)))], dtype=torch.float64, device=info.device)
        if info.world > 1:
            dist.broadcast(end, 0)
        self.task.schedule_steps = int(end.item())
        return (
            f"{tc.lr_schedule} learning-rate schedule to step {self.task.schedule_steps} (the time budget ends near step "
            f"{budget_end} at {per_step:.2f} s a step; the decay is planned {tc.decay_past_budget:.0%} past it)"
        )


class _Reporter:
    """Where a step's numbers go: the progress bar (losses, clips/s, budget left), log.jsonl and
    TensorBoard on rank 0, and warnings and scores printed above the bar."""

    def __init__(self, task: Task, step: int, t_start: float, clock=time.monotonic):
        ctx, tc = task.ctx, task.cfg.train
        self.task, self.run, self.info, self.log, self.tc, self.t_start = task, ctx.run, ctx.info, ctx.log, tc, t_start
        self.clock = clock
        self.writer = None
        if self.info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run.tensorboard_dir), purge_step=step)
        # With a time budget the step count is only a cap: the bar then counts steps and shows the time left.
        self.bar = tqdm(
            total=tc.steps if tc.time_budget is None else None, initial=step, desc=f"train {task.cfg.model.name}", unit="step",
            disable=not (ctx.progress and self.info.is_main), dynamic_ncols=True,
        )  # fmt: skip
        self.t_log, self.clips_seen, self.clips_per_s = clock(), 0, 0.0
        self.eval_seconds = 0.0
        self.monitored = None  # the last monitor_every block the diversity monitor ran in

    def say(self, line: str) -> None:
        with tqdm.external_write_mode():
            self.log(line)

    def step_done(self, step: int, record: dict, force: bool) -> None:
        tc = self.tc
        self.clips_seen += tc.batch_size
        self.bar.update(1)
        if not (step % tc.log_every == 0 or step == tc.steps or force):
            return
        now = self.clock()
        self.clips_per_s = self.clips_seen / max(now - self.t_log, 1e-9)
        self.t_log, self.clips_seen = now, 0
        line = {"step": step, **record, "clips_per_s": self.clips_per_s}
        block = step // tc.monitor_every
        if self.info.is_main and (block != self.monitored or force or step == tc.steps):
            self.monitored = block
            extra, warning = self.task.monitor(step)
            line |= extra
            if warning:
                self.say(f"step {step}: {warning}")
        left = {} if tc.time_budget is None else {"budget_left": f"{max(0.0, tc.time_budget - (now - self.t_start)):.0f}s"}
        shown = {label: f"{line[key]:.3f}" for label, key in self.task.progress_keys.items() if key in line}
        self.bar.set_postfix(**shown, clips_s=f"{self.clips_per_s:.1f}", **left)
        if self.info.is_main:
            self.run.append_log(line)
            for key, value in line.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, step)

    def scores(self, step: int, records: list[dict], seconds: float) -> None:
        """Scores computed during training, and what they cost: their seconds and share of the wall time so far."""
        self.eval_seconds += seconds
        share = self.eval_seconds / max(self.clock() - self.t_start, 1e-9)
        if self.info.is_main:
            for r in records:
                self.writer.add_scalar(f"eval/{r['metric']}", r["value"], step)
            self.writer.add_scalar("eval/seconds", seconds, step)
            self.say(f"{score_line(step, records)} ({seconds:.1f} s; scoring is {share:.0%} of the run's time so far)")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _last_good(task: Task) -> str:
    good = task.ctx.run.newest_good()
    return f"{good} (resume from it with --resume and lower rates)" if good else "none"


def _check_finite(step: int, record: dict, task: Task) -> None:
    losses = {k: v for k, v in record.items() if k.startswith("loss")}
    if not all(math.isfinite(v) for v in losses.values()):
        shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
        raise NonFiniteLossError(
            f"step {step}: non-finite loss ({shown}); training stopped. Last good checkpoint: {_last_good(task)}. {task.divergence_hint}"
        )


def _check_weights(step: int, weights: dict, task: Task, when: str) -> None:
    """Stop (before anything is saved) when a weight or a running statistic is non-finite or exploded."""
    problem = weights_problem(weights)
    if problem:
        raise NonFiniteLossError(
            f"step {step}: {problem} ({when}); training stopped without saving it. "
            f"Last good checkpoint: {_last_good(task)}. {task.divergence_hint}"
        )


def train(
    cfg: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    log=print,
    clock=time.monotonic,
) -> TrainResult:
    """Train `cfg.model` on `cfg.data` into the run folder `run_dir` (continue it with resume=True).
    `clock` (seconds) times the budget, the schedule's horizon and the speeds: tests pass a fake one."""
    task, step, elapsed_before = _start(cfg, run_dir, resume, device, progress, log)
    ctx, cfg, tc = task.ctx, task.cfg, task.cfg.train
    run, info = ctx.run, ctx.info
    evaluator = None
    if tc.eval_every:  # quality metrics every N steps (vidgan.metrics), appended to RUN/metrics.jsonl
        evaluator = TrainingEval(cfg, run.root, info.rank, info.world, info.device, ctx.text_table)
    t_start = clock()

    def save(at_step: int) -> None:
        if info.is_main:
            weights, tensors, state = task.checkpoint()
            _check_weights(at_step, weights, task, "checked before the checkpoint")
            tensors = {**tensors, "rng.torch": torch.get_rng_state()}
            state = {"elapsed": elapsed_before + clock() - t_start, "world_size": info.world, **state}
            if task.schedule_steps is not None:
                state["schedule_steps"] = task.schedule_steps
            run.save_checkpoint(at_step, weights, tensors, state, keep=tc.keep_checkpoints)

    def write_samples(at_step: int) -> None:
        if info.is_main:
            write_grid(run.sample_path(at_step), to_uint8(task.samples()), fps=cfg.model.fps)

    interrupt, reporter, diverging = Interrupt(), _Reporter(task, step, t_start, clock), DivergenceWatch()
    predict = tc.time_budget and tc.lr_schedule != "constant" and task.schedule_steps is None  # not fixed by a checkpoint yet
    horizon = _Horizon(task, step, t_start, clock) if predict else None
    stopped, record = "steps", {}
    try:
        while step < tc.steps:
            raw = task.step(step)
            step += 1
            said = horizon(step) if horizon is not None else None
            if said:
                horizon = None
                if info.is_main:
                    reporter.say(said)
            over_budget = tc.time_budget is not None and clock() - t_start > tc.time_budget
            record, stop = _reduce(raw, over_budget or interrupt.flag, info)
            _check_finite(step, record, task)
            if step % tc.log_every == 0 or stop:
                _check_weights(step, task.weights(), task, "weights are checked every logged step")
                warning = diverging(step, {k: v for k, v in record.items() if k.startswith("loss")})
                if warning and info.is_main:
                    reporter.say(f"warning: {warning}")
            reporter.step_done(step, record, force=stop)
            if step % tc.sample_every == 0:
                write_samples(step)
            if evaluator is not None and step % tc.eval_every == 0:
                t_eval = clock()
                records = evaluator(task.eval_generator, step)  # every rank generates its share
                reporter.scores(step, records, clock() - t_eval)
            if stop:
                stopped = "interrupted" if interrupt.flag else "time_budget"
                break
            if step % tc.checkpoint_every == 0:
                save(step)
        if run.latest() != run.checkpoint_dir(step) or stopped != "steps":
            save(step)
        if step % tc.sample_every:
            write_samples(step)
    finally:
        reporter.close()
        interrupt.restore()
    if info.world > 1:
        dist.barrier()
    if info.is_main and stopped != "steps":
        log(f"stopped at step {step} ({stopped.replace('_', ' ')}); checkpoint saved, continue with --resume")
    return TrainResult(run.root, step, stopped, record, reporter.clips_per_s)
