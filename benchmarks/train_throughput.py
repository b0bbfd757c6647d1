"""Training-step throughput: the plain fp32 eager baseline against vidgan's default path, same run.

Both paths run `vidgan.training.gan.GANStep` (one D update + one G update, the trainer's step) on
the same model, batch and random input:

    baseline   fp32, eager, contiguous tensors, torch.optim.Adam with its defaults: plain PyTorch
    vidgan     what `vidgan train` picks on this device (vidgan.training.speed.resolve_speed with
               train.precision=auto): e.g. on an AMX CPU bf16 autocast, channels-last-3d, bf16
               matmul conv gradients, fused Adam; on a GPU bf16 (or fp16 + GradScaler)

Each path lives in its own worker process (so peak RSS is per path); the parent alternates them
step by step (A B A B ...), so a slow spell of a shared machine falls on both. Reported per path:
median seconds per step (steps are numbered as in training, so a lazy R1 penalty runs on its own
interval and the median is an ordinary step), clips/s, FLOPs of one step without the penalty counted
with torch.utils.flop_counter (conv gradients computed as matmuls count the same FLOPs), achieved GFLOP/s, and peak RSS (on CUDA also
peak GPU memory), and CPU seconds per step (all threads: less sensitive than wall time to other
jobs on a shared machine). The last line is the speed-up: baseline median s/step / vidgan median s/step, and
the median of the per-round ratios.

    python benchmarks/train_throughput.py                       # VideoGAN 64x64x32, batch 8, CPU
    python benchmarks/train_throughput.py --steps 6 --json out.json
    python benchmarks/train_throughput.py --device cuda --batch 32
    python benchmarks/train_throughput.py --shape 32x32x16 --preset small --channels 1 --batch 16

With --sparse K the two paths are the continuous-time model (ctvgan) on vidgan's default speed path:
`dense` renders and judges all T frames of each clip, `sparse` only K frames at random times (what
`vidgan train --model ctvgan` does); the last line is then dense s/step / sparse s/step. --recipe
sprites: the sprites model with the sprites recipe (as `vidgan demo`) instead of ctvgan.

    python benchmarks/train_throughput.py --sparse 3 --shape 32x32x16 --preset small --channels 1 --batch 16
    python benchmarks/train_throughput.py --sparse 2 --recipe sprites --shape 32x32x16 --preset small --channels 1 --batch 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

THREADS = 2


# ----------------------------------------------------------------------------- worker: one path


def worker(args) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vidgan.config import TrainConfig
    from vidgan.models.registry import build_model
    from vidgan.presets import resolve_config
    from vidgan.training import speed
    from vidgan.training.gan import GANStep, StepSettings, sparse_times, take_frames

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    res, frames = (int(v) for v in args.shape.split("x")[1:])
    k = None if args.path in ("baseline", "vidgan") else (frames if args.path == "dense" else args.sparse)
    if k is None:
        cfg = resolve_config(args.preset, model="videogan")
    else:
        model = None if args.recipe else "ctvgan"
        cfg = resolve_config(args.preset, model=model, recipe=args.recipe, overrides={"model.sparse_frames": k})
    cfg = cfg.with_data_shape(frames=frames, resolution=res, channels=args.channels)
    torch.manual_seed(0)
    G, D = build_model(cfg.model)
    G.to(device).train()
    D.to(device).train()
    real = (torch.rand(args.batch, args.channels, frames, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    if args.path == "baseline":  # (dense and sparse take the vidgan path below)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=tuple(cfg.train.betas))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=tuple(cfg.train.betas))
        prec, accum, G_run, D_run, what = None, 1, G, D, "fp32 eager, contiguous, torch.optim.Adam defaults"
    else:  # the trainer's own choices (vidgan.training.loop.train applies the same plan)
        tc = TrainConfig(precision=args.precision, compile=args.compile, grad_accum=args.accum)
        plan = speed.resolve_speed(tc, device, width=cfg.model.max_channels)
        if plan.channels_last:
            speed.to_channels_last(G)
            speed.to_channels_last(D)
            real = real.contiguous(memory_format=torch.channels_last_3d)
        opt_g = speed.make_adam(G.parameters(), cfg.train.lr_g, cfg.train.betas, plan)
        opt_d = speed.make_adam(D.parameters(), cfg.train.lr_d, cfg.train.betas, plan)
        prec, accum = speed.StepPrecision(plan), plan.grad_accum
        compiler = speed.Compiler(plan.compile, log=lambda s: print(s, file=sys.stderr))
        G_run, D_run = compiler(G), compiler(D)
        what = plan.describe(args.batch // accum)
    settings = StepSettings.from_config(cfg.loss, 0, clips=args.clips)  # the size loss.augment "auto" decides by
    gan_step = GANStep(G_run, D_run, opt_g, opt_d, settings, precision=prec, accum=accum)
    noise = torch.Generator().manual_seed(2)
    steps_done: list[int] = []

    def step(count_flops: bool = False) -> None:
        z_d = torch.randn(args.batch, G.z_dim, generator=noise).to(device)
        z_g = torch.randn(args.batch, G.z_dim, generator=noise).to(device)
        times, clips = None, real
        if k is not None:  # ctvgan: the k frames D sees, at times drawn per step as in training
            times = sparse_times(args.batch, frames, k, seed=0, step=len(steps_done)).to(device)
            clips = take_frames(real, times)
        # The step number decides the lazy penalty (R1 every loss.penalty_every steps), as in training.
        # FLOPs are counted on a step without it: the counter cannot follow autograd.grad(create_graph=True).
        index = 1 if count_flops else len(steps_done)
        steps_done.append(1)
        penalty = settings.penalty
        settings.penalty = "none" if count_flops else penalty
        loss_d, loss_g, _, _ = gan_step(clips, z_d, z_g, step=index, times=times)
        settings.penalty = penalty
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            raise RuntimeError(f"{args.path}: non-finite loss")
        if device.type == "cuda":
            torch.cuda.synchronize()

    def reply(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply(
        {
            "ready": True,
            "what": what,
            "g_params": sum(p.numel() for p in G.parameters()),
            "d_params": sum(p.numel() for p in D.parameters()),
        }
    )
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "step":
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            reply({"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})
        elif cmd == "flops":
            with FlopCounterMode(display=False) as counter:
                step(count_flops=True)
            reply({"flops": counter.get_total_flops()})
        elif cmd == "stats":
            stats = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6}
            if device.type == "cuda":
                stats["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
                stats["device_name"] = torch.cuda.get_device_name(device)
            reply(stats)
        elif cmd == "quit":
            return


# ----------------------------------------------------------------------------- parent: interleave, table, ratio


class Worker:
    def __init__(self, path: str, args):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        cmd = (
            [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                path,
                "--device",
                args.device,
                "--shape",
                args.shape,
                "--preset",
                args.preset,
                "--channels",
                str(args.channels),
                "--batch",
                str(args.batch),
                "--threads",
                str(args.threads),
                "--precision",
                args.precision,
                "--accum",
                str(args.accum),
                "--sparse",
                str(args.sparse or 0),
                "--clips",
                str(args.clips),
            ]
            + (["--compile"] if args.compile else [])
            + (["--recipe", args.recipe] if args.recipe else [])
        )
        self.path = path
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.path} worker died (exit {self.proc.wait()}); see its error above")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


def cpu_steal() -> tuple[int, int] | None:
    try:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="64x64x32", help="RESxRESxFRAMES (default 64x64x32)")
    ap.add_argument("--preset", default="64px", help="model preset (default 64px: the paper's VideoGAN)")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=THREADS, help="CPU threads per worker (default 2)")
    ap.add_argument("--precision", default="auto", help="vidgan path: auto (default), fp32, bf16 or fp16")
    ap.add_argument("--compile", action="store_true", help="vidgan path: torch.compile G and D")
    ap.add_argument("--accum", type=int, default=1, help="vidgan path: gradient-accumulation micro-batches")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per path (default 2)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per path, alternating (default 4)")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument("--sparse", type=int, default=0, help="compare ctvgan judging K frames per clip against all frames (dense)")
    ap.add_argument(
        "--clips", type=int, default=4000, help="training-set size a loss.augment of auto decides by (default 4000: vidgan demo's)"
    )
    ap.add_argument("--recipe", help="with --sparse: this recipe's model and settings instead of ctvgan (e.g. sprites, as vidgan demo)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.path = args.worker
        worker(args)
        return
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")

    import torch

    print(
        f"{f'ctvgan (K={args.sparse} of all frames)' if args.sparse else 'VideoGAN'} GANStep, {args.preset} model at {args.shape} "
        f"x{args.channels} channels, batch {args.batch}, device {args.device}"
        + (f", {args.threads} threads per path" if args.device == "cpu" else "")
        + f"; torch {torch.__version__}",
        flush=True,
    )
    t_all = time.perf_counter()
    paths = [Worker("dense", args), Worker("sparse", args)] if args.sparse else [Worker("baseline", args), Worker("vidgan", args)]
    try:
        for w in paths:
            print(f"  {w.path:8s}: {w.info['what']}", flush=True)
        for _ in range(args.warmup):
            for w in paths:
                w.ask("step")
        times, cpu = {w.path: [] for w in paths}, {w.path: [] for w in paths}
        steal0 = cpu_steal()
        for _ in range(args.steps):  # A B A B ...
            for w in paths:
                r = w.ask("step")
                times[w.path].append(r["s"])
                cpu[w.path].append(r["cpu_s"])
        steal1 = cpu_steal()
        flops = {w.path: w.ask("flops")["flops"] for w in paths}
        stats = {w.path: w.ask("stats") for w in paths}
    finally:
        for w in paths:
            w.close()
    steal = None if not steal0 or not steal1 or steal1[1] <= steal0[1] else (steal1[0] - steal0[0]) / (steal1[1] - steal0[1])

    rows = []
    for w in paths:
        med = statistics.median(times[w.path])
        rows.append(
            {
                "path": w.path,
                "what": w.info["what"],
                "s_per_step": med,
                "s_per_step_min": min(times[w.path]),
                "step_times_s": times[w.path],
                "cpu_s_per_step": statistics.median(cpu[w.path]),
                "clips_per_s": args.batch / med,
                "gflop_per_step": flops[w.path] / 1e9,
                "gflop_per_s": flops[w.path] / 1e9 / med,
                **stats[w.path],
            }
        )
    base, fast = rows
    pair_ratios = [a / b for a, b in zip(base["step_times_s"], fast["step_times_s"])]
    ratio, pair_ratio = base["s_per_step"] / fast["s_per_step"], statistics.median(pair_ratios)
    print(
        f"  done in {time.perf_counter() - t_all:.0f} s; warmup {args.warmup}, timed {args.steps} steps per path"
        + (f"; CPU time stolen by the hypervisor: {steal:.0%}" if steal is not None else "")
    )
    print()
    head = ["path", "median s/step", "min s/step", "CPU s/step", "clips/s", "GFLOP/step", "GFLOP/s", "peak RSS MB"] + (
        ["peak GPU MB"] if args.device != "cpu" else []
    )
    body = [
        [
            r["path"],
            f"{r['s_per_step']:.3f}",
            f"{r['s_per_step_min']:.3f}",
            f"{r['cpu_s_per_step']:.3f}",
            f"{r['clips_per_s']:.2f}",
            f"{r['gflop_per_step']:.1f}",
            f"{r['gflop_per_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        + ([f"{r.get('peak_gpu_mb', 0):.0f}"] if args.device != "cpu" else [])
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "args": vars(args),
                    "results": rows,
                    "speedup": ratio,
                    "speedup_pairs_median": pair_ratio,
                    "cpu_time_ratio": base["cpu_s_per_step"] / fast["cpu_s_per_step"],
                    "cpu_steal_share": steal,
                },
                fh,
                indent=2,
            )
        print(f"\nsaved {args.json}")
    cpu_ratio = base["cpu_s_per_step"] / fast["cpu_s_per_step"]
    pair = "dense / sparse" if args.sparse else "baseline / vidgan"
    print(
        f"\nCPU time per step, {pair}: {cpu_ratio:.2f}x (all threads; on a machine shared with other jobs the"
        f" wall-clock ratio below shrinks when waiting threads lose their cores, set OMP_WAIT_POLICY=PASSIVE to see it)"
    )
    what = (
        f"judging {args.sparse} frames per clip over judging all" if args.sparse else "vidgan's default path over the fp32 eager baseline"
    )
    print(f"speed-up of {what}: {ratio:.2f}x (median of per-round ratios {pair_ratio:.2f}x)")


if __name__ == "__main__":
    main()
