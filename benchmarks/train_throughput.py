"""Training-step throughput of VideoGAN on CPU: fp32 eager, 2 threads.

What is measured: `vidgan.training.loop.gan_step` -- exactly the update the trainer runs, one
discriminator update (real + fake in one D pass) then one generator update -- with Adam
(betas 0.5, 0.999) and the nonsat loss, on a fixed random "real" batch in [-1, 1] (data
loading is not included). Configurations:

    64px_32x32x16_b8    the `64px` preset widths (the paper's network), 32x32, 16 frames, RGB, batch 8 (BASELINE)
    64px_32x32x16_b16   same, batch 16
    64px_64x64x32_b8    the paper's 64x64x32 network (12.7M / 11.0M parameters), batch 8
    64px_64x64x32_b16   same, batch 16
    small_32x32x16_b32  the `small` preset at 32x32x16, 1 channel, batch 32 (what `vidgan demo` trains)

Each configuration runs in its own subprocess, so its peak RSS (ru_maxrss) is its own. In
the child: build G and D, `--warmup` untimed steps, `--steps` timed steps, then one step under
torch.utils.flop_counter.FlopCounterMode (counted once, not timed; it counts convolutions and
matmuls, not elementwise ops or the Adam update). Reported: seconds/step (mean and min),
clips/s = batch / mean step time, GFLOP per step and per clip, achieved GFLOP/s = FLOPs per
step / mean step time, peak RSS in MB (10^6 bytes) of the process (imports, model, optimizer
state and the warm-up + timed steps; read before the FLOP-count step), and "steal": the share of CPU time the
hypervisor gave to other guests during the timed steps (/proc/stat; on a shared host the
timings vary from run to run, and a high steal share explains a slow row). Printed last:
each row's clips/s as a ratio of the baseline row's, and the 64x64x32 vs 32x32x16 GFLOP/s
ratio at each batch size.

Run (about 1-2 minutes on the 2-core CPU with the defaults):

    python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --configs 64px_64x64x32_b8,64px_32x32x16_b8 --steps 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

THREADS = 2
BASELINE = "64px_32x32x16_b8"

# name -> (preset, resolution, frames, channels, batch)
CONFIGS: dict[str, tuple[str, int, int, int, int]] = {
    "64px_32x32x16_b8": ("64px", 32, 16, 3, 8),
    "64px_32x32x16_b16": ("64px", 32, 16, 3, 16),
    "64px_64x64x32_b8": ("64px", 64, 32, 3, 8),
    "64px_64x64x32_b16": ("64px", 64, 32, 3, 16),
    "small_32x32x16_b32": ("small", 32, 16, 1, 32),
}


# ----------------------------------------------------------------------------- child: one configuration


def cpu_steal() -> tuple[int, int] | None:
    """(steal ticks, all ticks) from /proc/stat, or None where there is none (not Linux)."""
    try:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before, after) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two cpu_steal() readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def run_one(name: str, warmup: int, steps: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vidgan.config import load_config
    from vidgan.models.registry import build_model
    from vidgan.training.loop import gan_step
    from vidgan.training.losses import get_loss

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    preset, res, frames, channels, batch = CONFIGS[name]
    cfg = load_config(preset, {"model.resolution": res, "model.frames": frames, "model.channels": channels})
    G, D = build_model(cfg.model)
    G.train()
    D.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=tuple(cfg.train.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=tuple(cfg.train.betas))
    loss_fns = get_loss(cfg.loss.name)
    real = torch.rand(batch, channels, frames, res, res) * 2 - 1
    noise = torch.Generator().manual_seed(1)

    def step() -> None:
        z_d = torch.randn(batch, G.z_dim, generator=noise)
        z_g = torch.randn(batch, G.z_dim, generator=noise)
        loss_d, loss_g, _, _ = gan_step(G, D, G, D, opt_g, opt_d, loss_fns, real, z_d, z_g)
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            raise RuntimeError(f"{name}: non-finite loss")

    for _ in range(warmup):
        step()
    times, steal0 = [], cpu_steal()
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    steal = steal_share(steal0, cpu_steal())
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; before the FLOP count, which adds ~5%

    with FlopCounterMode(display=False) as counter:  # once, after timing: not part of any timed step
        step()
    flops = counter.get_total_flops()

    mean = sum(times) / len(times)
    rss_kib_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "name": name,
        "preset": preset,
        "shape": f"{res}x{res}x{frames}",
        "channels": channels,
        "batch": batch,
        "g_params": sum(p.numel() for p in G.parameters()),
        "d_params": sum(p.numel() for p in D.parameters()),
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "step_times_s": times,
        "s_per_step": mean,
        "s_per_step_min": min(times),
        "clips_per_s": batch / mean,
        "gflop_per_step": flops / 1e9,
        "gflop_per_clip": flops / 1e9 / batch,
        "gflop_per_s": flops / 1e9 / mean,
        "peak_rss_mb": rss_kib * 1024 / 1e6,
        "peak_rss_mb_incl_flop_count": rss_kib_after * 1024 / 1e6,
        "cpu_steal_share": steal,
        "torch": torch.__version__,
    }


# ----------------------------------------------------------------------------- parent: table and ratios


def run_child(name: str, warmup: int, steps: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--warmup", str(warmup), "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: child failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict]) -> None:
    head = ["config", "preset", "shape", "C", "batch", "G/D params M", "s/step", "min s/step", "clips/s",
            "GFLOP/step", "GFLOP/clip", "GFLOP/s", "peak RSS MB", "steal"]
    body = [
        [
            r["name"], r["preset"], r["shape"], str(r["channels"]), str(r["batch"]),
            f"{r['g_params'] / 1e6:.2f}/{r['d_params'] / 1e6:.2f}",
            f"{r['s_per_step']:.3f}", f"{r['s_per_step_min']:.3f}", f"{r['clips_per_s']:.2f}",
            f"{r['gflop_per_step']:.1f}", f"{r['gflop_per_clip']:.2f}", f"{r['gflop_per_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            "-" if r["cpu_steal_share"] is None else f"{r['cpu_steal_share']:.0%}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(fmt(head))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(fmt(b))


def print_ratios(rows: list[dict]) -> None:
    by_name = {r["name"]: r for r in rows}
    print()
    if BASELINE in by_name:
        base = by_name[BASELINE]["clips_per_s"]
        print(f"clips/s relative to the baseline {BASELINE} ({base:.2f} clips/s):")
        for r in rows:
            print(f"  {r['name']:<20} {r['clips_per_s'] / base:6.3f}x")
    else:
        print(f"(baseline {BASELINE} not in --configs: no clips/s ratios)")
    for b in (8, 16):
        big, small = by_name.get(f"64px_64x64x32_b{b}"), by_name.get(f"64px_32x32x16_b{b}")
        if big and small:
            print(f"GFLOP/s 64x64x32 / 32x32x16 at batch {b}: "
                  f"{big['gflop_per_s']:.1f} / {small['gflop_per_s']:.1f} = {big['gflop_per_s'] / small['gflop_per_s']:.3f}x")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (default 1)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)  # internal: run one config, print JSON
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")

    if args.child:
        print(json.dumps(run_one(args.child, args.warmup, args.steps)))
        return

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    print(f"VideoGAN gan_step, fp32 eager, CPU, {THREADS} threads, warmup {args.warmup}, timed steps {args.steps}; "
          f"one subprocess per config", flush=True)
    rows, t_all = [], time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        rows.append(run_child(name, args.warmup, args.steps))
        print(f"  {name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"total {time.perf_counter() - t_all:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": THREADS, "warmup": args.warmup, "steps": args.steps, "baseline": BASELINE, "results": rows}, fh, indent=2)
        print(f"saved {args.json}")
    print()
    print_table(rows)
    print_ratios(rows)  # last, as DESIGN.md asks


if __name__ == "__main__":
    main()
