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
    out = tmp_path / "quality.json"
    cmd = [sys.executable, str(BENCHMARKS / "quality.py"), "--budget", "2", "--preset", "tiny", "--size", "16", "--frames", "8",
           "--clips", "16", "--eval-n", "8", "--effnet-size", "32", "--threads", "1", "--work", str(tmp_path / "work"), "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    table = {(t["dataset"], t["row"]): t for t in result["table"]}
    rows = ["videogan-paper", "videogan", "mocogan", "two-stage", "ctvgan", "ctvgan-sprites", "floor"]
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


def test_generate_throughput_compares_the_models_samplers():
    cmd = [
        sys.executable,
        str(BENCHMARKS / "generate_throughput.py"),
        "--models",
        "videogan,ctvgan,ctvgan:layers",
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
    assert [ln[0] for ln in lines] == ["videogan", "ctvgan", "ctvgan:layers"] and all(float(ln[1]) > 0 for ln in lines), proc.stdout
