"""Kill training with SIGKILL at random moments, resume each time, and check nothing was lost.

Each round starts `vidgan train --resume` (the first without), kills it after a random delay,
then checks: the newest checkpoint loads (`Run.newest_good`), its step never goes back, every
line of log.jsonl parses and its steps increase, and no half-written checkpoint is visible under a
`step_*` name. A last uninterrupted resume must finish all steps. Prints one line per round and
a summary; exits 1 if any check failed.

    python benchmarks/kill_resume.py                  # 20 kills
    python benchmarks/kill_resume.py --kills 3 --steps 60 --max-delay 6
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def check_run(run: Path, last_step: int) -> tuple[int, list[str]]:
    """(newest good checkpoint step, problems found)."""
    from vidgan.run import Run, step_of

    problems = []
    r = Run(run)
    good = r.newest_good()
    step = step_of(good) if good else 0
    if step < last_step:
        problems.append(f"checkpoint step went back from {last_step} to {step}")
    steps = []
    lines = r.log_path.read_text().splitlines() if r.log_path.exists() else []
    for i, line in enumerate(lines):
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            if i < len(lines) - 1:  # only the last line may be cut by the kill
                problems.append(f"log.jsonl line {i + 1} does not parse")
    if steps != sorted(steps):
        problems.append("log.jsonl steps are not increasing")
    for folder in r.checkpoints():
        if not (folder / "state.json").is_file():
            problems.append(f"{folder.name} is incomplete")
    return step, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--steps", type=int, default=200, help="total steps of the run")
    ap.add_argument("--min-delay", type=float, default=2.0, help="seconds after start before a kill may come")
    ap.add_argument("--max-delay", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, help="folder for the data and the run (default: temporary)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="vidgan-kill-"))
    data, run = work / "data", work / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    vidgan = [sys.executable, "-m", "vidgan"]
    subprocess.run([*vidgan, "prepare", "builtin:moving-mnist", str(data), "--size", "16", "--frames", "8", "--n", "64", "--no-progress"],
                   check=True, env=env, capture_output=True)  # fmt: skip
    train = [*vidgan, "train", str(data), "--config", "tiny", "--out", str(run), "--steps", str(args.steps), "--no-progress",
             "--set", "train.checkpoint_every=5", "--set", "train.log_every=1", "--set", "train.sample_every=1000000"]  # fmt: skip
    last, failures = 0, 0
    for k in range(args.kills):
        cmd = train + (["--resume"] if run.exists() else [])
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        delay = rng.uniform(args.min_delay, args.max_delay)
        try:
            proc.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            finished = False
        step, problems = check_run(run, last)
        failures += bool(problems)
        print(f"kill {k + 1}/{args.kills}: after {delay:.1f} s{' (had finished)' if finished else ''}; newest checkpoint step {step}"
              + (f"; PROBLEMS: {'; '.join(problems)}" if problems else ""), flush=True)  # fmt: skip
        last = max(last, step)
        if finished:
            break
    t0 = time.monotonic()
    done = subprocess.run(train + ["--resume"], env=env, capture_output=True, text=True)
    step, problems = check_run(run, last)
    if done.returncode != 0 or step != args.steps or problems:
        failures += 1
        print(f"final resume: exit {done.returncode}, step {step} of {args.steps}; {'; '.join(problems)} {done.stderr[-500:]}")
    print(
        f"{args.kills} kills, {failures} with problems; the final resume reached step {step} of {args.steps} in {time.monotonic() - t0:.0f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
