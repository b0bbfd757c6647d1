"""Benchmark results files (benchmarks/results/*.json) and the README tables made from them.

Every benchmark result lives in one file per benchmark dataset or suite, in one schema:

    {"benchmark": "quality", "suite": "moving-mnist", "settings": {...},      what was measured, how
     "command", "commit", "cpu", "cpu_count", "cpu_flags", "date":            the newest write
     "rows": [{"row", "seed", figures (fd, precision, recall, steps, clips_per_s, pace, ...),
               "command", "commit", "cpu", "cpu_count", "cpu_flags", "date"}],   one row per seed
     "floor": {figures and provenance}}                                       quality only

Optional: "group" and "baseline" on a throughput row (ratios are taken against the group's baseline
row); "reported_means" (figures a source gave only as a mean over a run's seeds: used where the
per-seed values are null); "x_floor" / "x_baseline" there or on a row (a ratio as the run printed
it from unrounded figures); "transcribed_from" on a file or row (typed in from a session's note
because the benchmark did not save a file then: the tables mark those rows).

The README holds each table between `<!-- results:NAME -->` and `<!-- /results -->`, NAME being
the file's name without .json, so a number lives in one place and the README is made from it:

    python benchmarks/tables.py             # rewrite README.md's tables from benchmarks/results/
    python benchmarks/tables.py --check     # exit 1 if README.md's tables differ from the files
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"(<!-- results:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.DOTALL)
PROVENANCE = ("command", "commit", "cpu", "cpu_count", "cpu_flags", "date")
FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512f", "avx2")  # what decides the speed paths
TRANSCRIBED = "† transcribed from session notes (`transcribed_from` in the file names the note); re-run pending."


# ----------------------------------------------------------------------------- writing (benchmarks)


def provenance(argv: list[str] | None = None) -> dict:
    """Where a result comes from: the exact command, the commit (+dirty), the CPU and the date."""
    argv = sys.argv if argv is None else argv
    cpu, flags = cpu_model()
    return {
        "command": shlex.join(["python", *argv]),
        "commit": git_commit(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_flags": flags,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit(repo: Path = ROOT) -> str:
    """HEAD's hash, with "+dirty" when tracked files differ from it; "unknown" outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if status.stdout.strip() else "")


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name and the flags among FLAGS it has (/proc/cpuinfo, else lscpu)."""
    text = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        except OSError:
            pass
    name = re.search(r"^(?:model name\s*|Model name):\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^(?:flags\s*|Flags):\s*(.+)$", text, re.MULTILINE)
    have = set(flags.group(1).split()) if flags else set()
    return (name.group(1).strip() if name else "unknown"), [f for f in FLAGS if f in have]


# benchmarks/quality.py's own settings: a run with others goes to a file of its own (named by them)
QUALITY_STANDARD = {
    "budget": 600.0,
    "preset": "small",
    "frames": 16,
    "size": None,
    "clips": 4000,
    "eval_n": 256,
    "effnet_size": 224,
    "threads": 2,
}


def save_quality(rows: list[dict], settings: dict, sizes: dict, folder: Path, argv: list[str] | None = None) -> list[Path]:
    """Write benchmarks/quality.py's per-seed rows (each with its "dataset"; a "floor" row becomes the
    file's floor) into one file per dataset; `sizes` gives each dataset's clip size. A row measured
    now replaces that row's earlier seeds in the file; the other rows stay."""
    here = provenance(argv)
    tag = "".join(f"-{k.replace('_', '')}{v:g}" if isinstance(v, float) else f"-{k.replace('_', '')}{v}"
                  for k, v in settings.items() if k in QUALITY_STANDARD and QUALITY_STANDARD[k] != v)  # fmt: skip
    written = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        path = Path(folder) / f"quality-{dataset}{tag}.json"
        new = [_quality_row(r) | here for r in rows if r["dataset"] == dataset and r["row"] != "floor"]
        floor = [_quality_row(r) | here for r in rows if r["dataset"] == dataset and r["row"] == "floor"]
        old = json.loads(path.read_text()) if path.exists() else {}
        names = {r["row"] for r in new}
        data = {
            "benchmark": "quality",
            "suite": dataset,
            "settings": settings | {"size": sizes.get(dataset, settings.get("size"))},
            **here,
            "rows": [r for r in old.get("rows", []) if r["row"] not in names] + new,
            "reported_means": [m for m in old.get("reported_means", []) if m["row"] not in names],
            "floor": floor[-1] if floor else old.get("floor"),
        }
        if not data["reported_means"]:
            del data["reported_means"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def _quality_row(r: dict) -> dict:
    drop = ("dataset", "run")  # the run folder is a temporary path
    return {k: v for k, v in r.items() if k not in drop}


# ----------------------------------------------------------------------------- tables


def machine(entry: dict) -> str:
    """'Intel Xeon (AMX), 2 CPUs' from a row's cpu, cpu_flags and cpu_count."""
    flags = entry.get("cpu_flags") or []
    kind = " (AMX)" if any(f.startswith("amx") for f in flags) else " (no AMX)" if "avx512_bf16" in flags else ""
    count = f", {entry['cpu_count']} CPUs" if entry.get("cpu_count") else ""
    return f"{entry.get('cpu', 'unknown')}{kind}{count}"


def _groups(rows: list[dict], key) -> list[list[dict]]:
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return list(out.values())


def _run_key(r: dict) -> tuple:
    return tuple(str(r.get(k)) for k in PROVENANCE)


def _reported(data: dict, group: list[dict]) -> dict:
    """The reported_means entry of this group's run (same row and provenance), or {}."""
    r = group[0]
    for m in data.get("reported_means", []):
        if m["row"] == r["row"] and m.get("group") == r.get("group") and _run_key(m) == _run_key(r):
            return m
    return {}


def _figure(group: list[dict], reported: dict, field: str) -> float | None:
    """The reported mean (the run printed it from unrounded figures), else the mean over the seeds
    when every seed has the figure, else None."""
    values = [r.get(field) for r in group]
    if reported.get(field) is not None:
        return reported[field]
    return sum(values) / len(values) if all(v is not None for v in values) else None


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def _fmt(value: float | None, spec: str) -> str:
    return "n/r" if value is None else format(value, spec)


def _figures(value: float) -> str:
    """A throughput figure as its source gave it, to 4 significant digits (1629, 12.26, 0.235)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _commands(runs: list[dict]) -> tuple[dict, list[str]]:
    """A letter per distinct command, and the lines that list them."""
    letters, lines = {}, []
    for r in runs:
        if r["command"] not in letters:
            letters[r["command"]] = "abcdefghijklmnopqrstuvwxyz"[len(letters)]
            lines.append(f"({letters[r['command']]}) `{r['command']}`")
    return letters, lines


def render_quality(data: dict) -> str:
    s, floor = data.get("settings", {}), data.get("floor") or {}
    groups = _groups(data["rows"], lambda r: (r["row"], *_run_key(r)))
    floor_fd = floor.get("fd")
    letters, runs = _commands([g[0] for g in groups] + ([floor] if floor.get("command") else []))
    metric = s.get("metric", "fd")
    lines = [
        f"| row | run | seeds | {metric} | per seed | x floor | precision | recall | steps | clips/s | px/frame | machine | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    marked = False
    for g in groups:
        rep = _reported(data, g)
        fds = [r.get("fd") for r in g]
        mean = _figure(g, rep, "fd")
        std = rep.get("fd_std", _std(fds) if None not in fds else None)
        fd = _fmt(mean, ".1f") + (f" ± {std:.1f}" if len(g) > 1 and std is not None else "")
        ratio = rep.get("x_floor", g[0].get("x_floor") if len(g) == 1 else None)  # as the run printed it
        if ratio is None and mean is not None and floor_fd:
            ratio = mean / floor_fd
        transcribed = any(r.get("transcribed_from") for r in g)
        marked |= transcribed
        lines.append(
            f"| {g[0]['row']}{' †' if transcribed else ''} | ({letters[g[0]['command']]}) | {len(g)} | {fd} | "
            f"{', '.join(_fmt(v, '.1f') for v in fds) if len(g) > 1 else ''} | {_fmt(ratio, '.1f')}x | "
            f"{_fmt(_figure(g, rep, 'precision'), '.2f')} | {_fmt(_figure(g, rep, 'recall'), '.2f')} | "
            f"{_fmt(_figure(g, rep, 'steps'), '.0f')} | {_fmt(_figure(g, rep, 'clips_per_s'), '.1f')} | "
            f"{_fmt(_figure(g, rep, 'pace'), '.2f')} | {machine(g[0])} | {str(g[0]['date'])[:10]} |"
        )
    if floor:
        transcribed = bool(floor.get("transcribed_from"))
        marked |= transcribed
        run = f"({letters[floor['command']]})" if floor.get("command") else ""
        lines.append(
            f"| floor (training clips){' †' if transcribed else ''} | {run} | | {_fmt(floor_fd, '.1f')} | | 1.0x | "
            f"{_fmt(floor.get('precision'), '.2f')} | {_fmt(floor.get('recall'), '.2f')} | | | {_fmt(floor.get('pace'), '.2f')} | "
            f"{machine(floor) if floor.get('cpu') else ''} | {str(floor.get('date', ''))[:10]} |"
        )
    size = s.get("size") or "?"
    notes = [
        "",
        f"{s.get('budget', '?'):g} s of training per run, `{s.get('preset', '?')}` preset, {size}x{size}x{s.get('frames', '?')} clips; "
        f"{metric}: {s.get('eval_n', '?')} generated clips against held-out clips (lower is better); "
        "± is the standard deviation over seeds (for two seeds, half their difference); x floor is fd over the floor's "
        "(the training clips themselves against the same held-out clips); px/frame: how far a clip's centre of brightness "
        "moves a frame (compare with the floor's); n/r: not recorded. Runs: "
        + "; ".join(runs)
        + "."
        + (f" {TRANSCRIBED}" if marked else ""),
    ]
    return "\n".join(lines + notes) + "\n"


MEASURES = [("clips_per_s", "clips/s"), ("frames_per_s", "frames/s"), ("s_per_step", "s/step")]
EXTRAS = [("gflop_s", "GFLOP/s"), ("gflop_per_step", "GFLOP/step"), ("fd_change_pct", "fd vs baseline")]


def render_throughput(data: dict) -> str:
    rows = data["rows"]
    groups = _groups(rows, lambda r: (r.get("group"), *_run_key(r)))
    measures = [m for m in MEASURES if any(r.get(m[0]) is not None for r in rows)]
    extras = [m for m in EXTRAS if any(r.get(m[0]) is not None for r in rows)]
    letters, runs = _commands([g[0] for g in groups])
    head = ["what", "run", "path", *[m[1] for m in measures], *[e[1] for e in extras], "x baseline", "machine", "date"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    marked = False
    for g in groups:
        base = next((r for r in g if r.get("baseline")), g[0])
        for i, r in enumerate(g):
            measure = next((m[0] for m in measures if base.get(m[0]) is not None and r.get(m[0]) is not None), None)
            ratio = r.get("x_baseline")
            if ratio is None and measure:
                ratio = r[measure] / base[measure]
            transcribed = bool(r.get("transcribed_from"))
            marked |= transcribed
            cells = [
                (r.get("group") or "") if i == 0 else "",
                f"({letters[r['command']]})",
                f"{r['row']}{' (baseline)' if r is base else ''}{' †' if transcribed else ''}",
                *[_figures(r[m[0]]) if r.get(m[0]) is not None else "" for m in measures],
                *[
                    (f"{r[e[0]]:+.2f}%" if e[0] == "fd_change_pct" else _figures(r[e[0]])) if r.get(e[0]) is not None else ""
                    for e in extras
                ],
                _fmt(ratio, ".2f") + "x",
                machine(r),
                str(r["date"])[:10],
            ]
            lines.append("| " + " | ".join(cells) + " |")
    runs_line = "x baseline: the row's figure over its baseline's, measured in the same run. Runs: " + "; ".join(runs) + "."
    notes = ["", runs_line + (f" {TRANSCRIBED}" if marked else "")]
    return "\n".join(lines + notes) + "\n"


def render(data: dict) -> str:
    return render_quality(data) if data.get("benchmark") == "quality" else render_throughput(data)


def update(text: str, results: Path) -> str:
    """The README text with every marked table made again from its results file."""

    def table(m: re.Match) -> str:
        path = results / f"{m['name']}.json"
        if not path.exists():
            raise SystemExit(f"error: the README marks a table results:{m['name']}, but {path} does not exist")
        return m.group(1) + render(json.loads(path.read_text())) + m.group(4)

    return MARKER.sub(table, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of results files")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README's tables differ from the files")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    new = update(text, args.results)
    names = [m["name"] for m in MARKER.finditer(text)]
    if args.check:
        if new != text:
            diff = difflib.unified_diff(text.splitlines(), new.splitlines(), "README (now)", "from the results files", lineterm="")
            print("\n".join(diff))
            print(f"error: {args.readme}'s tables differ from {args.results}; run python benchmarks/tables.py", file=sys.stderr)
            return 1
        print(f"{args.readme}: {len(names)} tables agree with {args.results}")
        return 0
    if new != text:
        args.readme.write_text(new)
    print(f"{args.readme}: {len(names)} tables written from {args.results}" + ("" if new != text else " (no change)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
