"""Dataset-preparation throughput on the built-in sample clips, against bare PyAV decoding.

What is measured, on the two real videos of `builtin:sample-clips` (bikes.mp4, 640x272, 250
frames; carphone_pristine.mp4, 176x144, 120 frames), each timing the best of `--repeat` runs:

    bare decode   av.open + decode every frame of the video stream, no conversion (the floor)
    iter_frames   vidgan.data.video_io.iter_frames(path, size=64): decode + AREA resize to
                  RGB in libswscale + centre crop, every frame consumed
    prepare       vidgan.data.prepare.prepare("builtin:sample-clips", fresh temp dir,
                  PrepareSettings(size=64, frames=16)): the whole call, i.e. decode, resize,
                  cut 16-frame clips, write + fsync the shard and the index JSON; once with one
                  worker and once with the default thread pool (files decoded in parallel)

The three run in turn, `--repeat` rounds, best time of each kept. frames/s = frames decoded
(all frames of both files, counted by the bare decode) / seconds.
Printed last: the ratio prepare time / bare decode time (DESIGN.md: ratio to a baseline,
measured in the same run), and the share of CPU time stolen by the hypervisor during the
runs (from /proc/stat): on a shared host the timings vary run to run. torch is not used here, but its threads are set to 2 like the
other benchmarks.

Run:

    python benchmarks/prepare_throughput.py
    python benchmarks/prepare_throughput.py --repeat 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

THREADS = 2
SIZE, FRAMES = 64, 16


def best_of_interleaved(fns: list, repeat: int) -> list[tuple[float, object]]:
    """(best wall time in seconds, result of the last call) for each fn. The fns run in turn,
    round after round, so a slow spell of the machine does not fall on one measurement only."""
    best, results = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, results))


def cpu_steal() -> tuple[int, int] | None:
    """(steal ticks, all ticks) from /proc/stat, or None where there is none (not Linux)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before, after) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two cpu_steal() readings:
    a noisy host makes timings vary from run to run."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def bare_decode(files: list[Path]) -> int:
    import av

    n = 0
    for path in files:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for _ in container.decode(stream):
                n += 1
    return n


def decode_iter_frames(files: list[Path]) -> int:
    from vidgan.data.video_io import iter_frames

    n = 0
    for path in files:
        for frame in iter_frames(path, size=SIZE):
            assert frame.shape == (SIZE, SIZE, 3)
            n += 1
    return n


def run_prepare(src: str, workers: int | None = None) -> int:
    from vidgan.data.prepare import PrepareSettings, prepare

    with tempfile.TemporaryDirectory(prefix="vidgan-bench-prepare-") as tmp:
        result = prepare(
            src, Path(tmp) / "out", PrepareSettings(size=SIZE, frames=FRAMES), progress=False, log=lambda msg: None, workers=workers
        )
    return result.clips


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is reported (default 3)")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument(
        "--copies",
        type=int,
        default=1,
        help="list each sample file this many times (a folder of links), "
        "so the worker pool has files to spread (default 1: builtin:sample-clips itself)",
    )
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    import av
    import torch

    import vidgan.data.prepare  # noqa: F401  (imported before timing: not part of any measurement)
    import vidgan.data.video_io  # noqa: F401
    from vidgan.data.builtin import sample_clip_files

    torch.set_num_threads(THREADS)
    files, src = sample_clip_files(), "builtin:sample-clips"
    links = tempfile.TemporaryDirectory(prefix="vidgan-bench-prepare-src-")
    if args.copies > 1:
        src_dir = Path(links.name)
        for k in range(args.copies):
            for f in sample_clip_files():
                (src_dir / f"{f.stem}_{k}{f.suffix}").symlink_to(f)
        files, src = sorted(src_dir.iterdir()), str(src_dir)
    print(
        f"{src if args.copies == 1 else f'{args.copies} copies of builtin:sample-clips'} "
        f"({', '.join(sorted({p.name for p in sample_clip_files()}))}), size {SIZE}, frames {FRAMES}; "
        f"best of {args.repeat}; PyAV {av.__version__}",
        flush=True,
    )

    steal0 = cpu_steal()
    from vidgan.data.prepare import default_workers

    workers = default_workers()
    (t_bare, frames), (t_iter, n_iter), (t_prep1, _), (t_prep, clips) = best_of_interleaved(
        [lambda: bare_decode(files), lambda: decode_iter_frames(files), lambda: run_prepare(src, 1), lambda: run_prepare(src, workers)],
        args.repeat,
    )
    links.cleanup()
    steal = steal_share(steal0, cpu_steal())
    if n_iter != frames:
        raise RuntimeError(f"iter_frames gave {n_iter} frames, bare decode {frames}")

    rows = [
        ("bare decode (av, no conversion)", t_bare),
        (f"decode + iter_frames(size={SIZE})", t_iter),
        (f"prepare(size={SIZE}, frames={FRAMES}), 1 worker", t_prep1),
        (f"prepare(size={SIZE}, frames={FRAMES}), {workers} workers (default)", t_prep),
    ]
    print(
        f"{frames} frames decoded per run; prepare made {clips} clips"
        + (f"; CPU time stolen by the hypervisor during the runs: {steal:.0%}" if steal is not None else "")
        + "\n"
    )
    w = max(len(name) for name, _ in rows)
    print(f"{'measurement'.ljust(w)}  {'best s':>8}  {'frames/s':>9}  {'x bare time':>11}")
    print(f"{'-' * w}  {'-' * 8}  {'-' * 9}  {'-' * 11}")
    for name, t in rows:
        print(f"{name.ljust(w)}  {t:8.4f}  {frames / t:9.0f}  {t / t_bare:11.2f}")

    if args.json:
        out = {
            "files": [str(p) for p in files],
            "frames": frames,
            "clips": clips,
            "repeat": args.repeat,
            "size": SIZE,
            "clip_frames": FRAMES,
            "pyav": av.__version__,
            "results": {name: {"best_s": t, "frames_per_s": frames / t} for name, t in rows},
            "cpu_steal_share": steal,
            "iter_frames_over_bare": t_iter / t_bare,
            "prepare_over_bare": t_prep / t_bare,
            "prepare_1_worker_over_bare": t_prep1 / t_bare,
            "workers": workers,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nsaved {args.json}")
    print(f"\niter_frames time / bare decode time: {t_iter / t_bare:.2f}x")
    print(f"prepare time (1 worker) / bare decode time: {t_prep1 / t_bare:.2f}x")
    print(f"prepare time ({workers} workers, default) / bare decode time: {t_prep / t_bare:.2f}x")


if __name__ == "__main__":
    main()
