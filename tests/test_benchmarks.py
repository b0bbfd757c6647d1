"""The benchmarks run end to end at tiny sizes, so they cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _benchmark(name: str):
    """A benchmark script loaded as a module (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quality_benchmark_end_to_end(tmp_path):
    out, results = tmp_path / "quality.json", tmp_path / "results"
    cmd = [sys.executable, str(BENCHMARKS / "quality.py"), "--budget", "2", "--preset", "tiny", "--size", "16", "--frames", "8",
           "--clips", "16", "--eval-n", "8", "--effnet-size", "32", "--threads", "1", "--work", str(tmp_path / "work"), "--json", str(out),
           "--results", str(results)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    saved = {p.name: json.loads(p.read_text()) for p in results.glob("*.json")}  # one results file per dataset, named by its settings
    assert sorted(saved) == [f"quality-{d}-budget2-presettiny-frames8-size16-clips16-evaln8-effnetsize32-threads1.json"
                             for d in ("moving-mnist", "sample-clips")]  # fmt: skip
    for data in saved.values():
        assert data["command"].startswith("python ") and "--budget 2" in data["command"] and data["cpu"] and data["date"]
        assert data["floor"]["fd"] > 0 and "transcribed_from" not in data
        assert {r["row"] for r in data["rows"]} == {t["row"] for t in result["table"] if t["dataset"] == data["suite"]} - {"floor"}
    table = {(t["dataset"], t["row"]): t for t in result["table"]}
    rows = ["videogan-paper", "videogan", "mocogan", "two-stage", "ctvgan", "sprites", "floor"]
    assert set(table) == {(d, r) for d in ("moving-mnist", "sample-clips") for r in rows}
    for (dataset, row), t in table.items():
        assert t["fd"] > 0 and 0 <= t["precision"] <= 1 and 0 <= t["recall"] <= 1, (dataset, row, t)
        if row != "floor":
            assert t["steps"] >= 1 and t["clips_per_s"] > 0
    assert table["moving-mnist", "floor"]["pace"] > 0.3  # Moving MNIST's digits move (about 1.2 px a frame at 32 px)
    # (at 8 clips and 2 s of training the distances are noise: which row wins is not tested here)
    assert all(t["n_real"] >= 8 for t in result["rows"] if t["dataset"] == "moving-mnist")
    assert "x floor" in proc.stdout and "ctvgan" in proc.stdout


def test_quality_pace_is_how_far_the_clips_centre_of_brightness_moves_a_frame():
    import numpy as np

    quality = _benchmark("quality")
    clips = np.zeros((2, 6, 32, 32, 3), np.uint8)
    for t in range(6):  # clip 0: a block moving 3 px right and 4 px down a frame; clip 1 still
        clips[0, t, 2 + 4 * t : 5 + 4 * t, 1 + 3 * t : 4 + 3 * t] = 200
        clips[1, t, 10:14, 10:14] = 90
    assert quality.pace(clips) == pytest.approx((5.0 + 0.0) / 2, abs=1e-3)
    assert quality.pace(clips[1:]) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.slow  # runs a benchmark script
def test_metric_sensitivity_scores_the_training_clips_with_each_flaw(tmp_path):
    out = tmp_path / "sens.json"
    cmd = [sys.executable, str(BENCHMARKS / "metric_sensitivity.py"), "--size", "16", "--frames", "8", "--clips", "16", "--eval-n", "8",
           "--effnet-size", "32", "--flaws", "as-is,half-pixel,blur-1", "--work", str(tmp_path / "work"), "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["flaw"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"as-is", "half-pixel", "blur-1"}
    assert rows["blur-1"]["fd"] > rows["as-is"]["fd"]  # a blur is never free
    assert "| moving-mnist | half-pixel |" in proc.stdout


def test_metric_sensitivity_flaws_do_what_they_say():
    import numpy as np

    sens = _benchmark("metric_sensitivity")
    clips = np.zeros((1, 2, 16, 16, 1), np.uint8)
    clips[..., 6:10, 6:10, :] = 200
    shifted = sens.degrade(clips, "half-pixel").astype(float)[0, 0, ..., 0]
    grid = np.arange(16) + 0.5
    assert (shifted.sum(0) * grid).sum() / shifted.sum() == pytest.approx(7.5, abs=1e-2)  # centre 8.0 -> 7.5 (left)
    assert (shifted.sum(1) * grid).sum() / shifted.sum() == pytest.approx(7.5, abs=1e-2)  # and up
    assert shifted.sum() == pytest.approx(float(clips[0, 0].sum()), rel=1e-2)  # moved, not lost
    blurred = sens.degrade(clips, "blur-1")
    assert blurred.max() < 200 and int(blurred.sum()) == pytest.approx(int(clips.sum()), rel=1e-2)
    assert (sens.degrade(clips, "as-is") == clips).all()
    with pytest.raises(ValueError, match="unknown flaw"):
        sens.degrade(clips, "sepia")


@pytest.mark.slow
def test_kill_resume_benchmark_kills_and_finishes(tmp_path):
    """Two SIGKILLs at random moments of a tiny run: the run resumes each time and finishes all steps."""
    cmd = [sys.executable, str(BENCHMARKS / "kill_resume.py"), "--kills", "2", "--steps", "30", "--min-delay", "5", "--max-delay", "8",
           "--work", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "2 kills, 0 with problems; the final resume reached step 30 of 30" in proc.stdout
    from vidgan.run import Run

    assert Run(tmp_path / "run").newest_good().name == "step_000000030"


@pytest.mark.slow  # runs a benchmark script
def test_generate_throughput_compares_the_models_samplers():
    cmd = [
        sys.executable,
        str(BENCHMARKS / "generate_throughput.py"),
        "--models",
        "videogan,ctvgan,sprites:sprites",
        "--n",
        "2",
        "--batch",
        "2",
        "--repeat",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln.split() for ln in proc.stdout.splitlines() if "clips/s" in ln and ln.startswith("  ")]
    assert [ln[0] for ln in lines] == ["videogan", "ctvgan", "sprites:sprites"] and all(float(ln[1]) > 0 for ln in lines), proc.stdout


def _quality_results(rows: list[tuple[str, int, float]], **extra) -> dict:
    """A small results file in the quality schema: (row, seed, fd) per seed, floor fd 10."""
    where = {"command": "python benchmarks/quality.py --seeds 2", "commit": "abc123", "cpu": "Test CPU", "cpu_count": 2,
             "cpu_flags": ["amx_tile"], "date": "2026-12-05T10:00:00+00:00"}  # fmt: skip
    return {
        "benchmark": "quality", "suite": "moving-mnist",
        "settings": {"budget": 600.0, "preset": "small", "frames": 16, "size": 32, "eval_n": 256, "metric": "fd_effnet256_16f"},
        **where,
        "rows": [{"row": r, "seed": s, "fd": fd, "precision": 0.5, "recall": 0.25, "steps": 100 + s, "clips_per_s": 4.0,
                  "pace": 1.0, **where} for r, s, fd in rows],
        "floor": {"fd": 10.0, "precision": 0.9, "recall": 0.8, "pace": 1.2, **where, **extra},
    }  # fmt: skip


def test_tables_rewrite_the_readme_between_markers_and_check_it(tmp_path):
    tables = _benchmark("tables")
    results = tmp_path / "results"
    results.mkdir()
    data = _quality_results([("sprites", 0, 20.0), ("sprites", 1, 24.0), ("videogan", 0, 150.0)], transcribed_from="a note")
    (results / "quality-moving-mnist.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- results:quality-moving-mnist -->\nstale table\n<!-- /results -->\nafter\n")
    args = ["--readme", str(readme), "--results", str(results)]

    assert tables.main([*args, "--check"]) == 1  # the stale table differs from the file
    assert "stale table" in readme.read_text()  # --check changes nothing
    assert tables.main(args) == 0 and tables.main([*args, "--check"]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- results:quality-moving-mnist -->\n| row |") and text.endswith("<!-- /results -->\nafter\n")
    sprites = next(line for line in text.splitlines() if line.startswith("| sprites"))
    cells = [c.strip() for c in sprites.split("|")[1:-1]]
    # mean +- std over seeds, n seeds, per seed, x floor, precision, recall, steps, clips/s, px/frame, machine, date
    assert cells[2:] == [
        "2",
        "22.0 ± 2.0",
        "20.0, 24.0",
        "2.2x",
        "0.50",
        "0.25",
        "100",
        "4.0",
        "1.00",
        "Test CPU (AMX), 2 CPUs",
        "2026-12-05",
    ]
    assert "| floor (training clips) † |" in text and "transcribed from session notes" in text  # the transcribed floor is marked
    assert "| sprites |" in text  # measured rows are not

    readme.write_text(text.replace("22.0 ± 2.0", "21.0 ± 2.0"))  # a hand edit of a number
    assert tables.main([*args, "--check"]) == 1
    (results / "quality-moving-mnist.json").unlink()
    with pytest.raises(SystemExit, match="does not exist"):  # a marker without its file
        tables.main([*args, "--check"])


def test_the_readmes_tables_agree_with_the_results_files(capsys):
    assert _benchmark("tables").main(["--check"]) == 0, capsys.readouterr()  # in this process: `tables.py --check`
    readme = (BENCHMARKS.parent / "README.md").read_text()
    for path in (BENCHMARKS / "results").glob("*.json"):  # one table per results file: none left out of the README
        assert f"<!-- results:{path.stem} -->" in readme, path.name


def test_quality_results_files_keep_other_rows_and_say_where_they_come_from(tmp_path):
    tables = _benchmark("tables")
    settings = dict(tables.QUALITY_STANDARD, seeds=2, metric="fd_effnet256_16f")
    first = [{"dataset": "moving-mnist", "row": r, "seed": s, "fd": fd, "run": "/tmp/x"} for r, s, fd in
             [("videogan", 0, 130.0), ("sprites", 0, 22.0), ("sprites", 1, 23.0), ("floor", 0, 8.2)]]  # fmt: skip
    (path,) = tables.save_quality(first, settings, {"moving-mnist": 32}, tmp_path, argv=["benchmarks/quality.py", "--rows", "a b"])
    again = [
        {"dataset": "moving-mnist", "row": "sprites", "seed": 0, "fd": 21.0},
        {"dataset": "moving-mnist", "row": "floor", "seed": 0, "fd": 8.3},
    ]
    assert tables.save_quality(again, settings, {"moving-mnist": 32}, tmp_path) == [path]
    data = json.loads(path.read_text())
    assert path.name == "quality-moving-mnist.json" and data["settings"]["size"] == 32
    assert [(r["row"], r["seed"], r["fd"]) for r in data["rows"]] == [("videogan", 0, 130.0), ("sprites", 0, 21.0)]  # sprites re-run
    assert data["rows"][0]["command"] == "python benchmarks/quality.py --rows 'a b'" and "run" not in data["rows"][0]
    assert data["floor"]["fd"] == 8.3 and "floor" not in {r["row"] for r in data["rows"]}
    for entry in (data, *data["rows"], data["floor"]):
        assert entry["commit"] and entry["cpu"] and entry["cpu_count"] >= 1 and entry["date"][:2] == "20"
    (other,) = tables.save_quality(again, settings | {"budget": 60.0}, {"moving-mnist": 32}, tmp_path)
    assert other.name == "quality-moving-mnist-budget60.json"  # other settings: a file of their own


def test_results_files_say_where_they_come_from():
    for path in sorted((BENCHMARKS / "results").glob("*.json")):
        data = json.loads(path.read_text())
        assert data["benchmark"] and data["rows"], path
        for entry in (data, *data["rows"], *([data["floor"]] if data.get("floor") else [])):
            assert all(entry.get(k) for k in ("command", "commit", "cpu", "date")), (path, entry)
