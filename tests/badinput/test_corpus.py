"""The bad-input corpus: every way a user can hand vidgan something wrong that we know of.

Each case runs the real command line (`vidgan.cli.main`, in process) and asserts: the exit code,
exactly one `error:` line (or click's one `Error:` line for a usage error) naming the path or the
argument, no traceback, and that the prepared dataset, the trained run and the library it was
pointed at are byte-for-byte what they were before. The inputs are made here, small.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import torch_threads
from vidgan.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under the folders: relative path -> sha1 of its bytes."""
    seen = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not path.is_symlink():
                seen[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return seen


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, want_code: int, *needles: str) -> None:
    assert code == want_code, err
    assert "Traceback" not in err
    marker = "Error:" if want_code == 2 else "error:"
    lines = [ln for ln in err.splitlines() if ln.startswith(marker)]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ----------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def world(tmp_path_factory, mnist16):
    """A prepared dataset, a tiny trained run (checkpoints at steps 2 and 4), a library with one clip,
    and a plain file, all in one folder."""
    root = tmp_path_factory.mktemp("badinput")
    data = root / "data"
    shutil.copytree(mnist16, data)
    run = root / "run"
    with torch_threads(1):
        assert main(["train", str(data), "--config", "tiny", "--out", str(run), "--steps", "4", "--no-progress",
                     "--set", "train.checkpoint_every=2", "--set", "train.sample_every=4", "--set", "train.keep_checkpoints=5"]) == 0  # fmt: skip
    lib = root / "lib"
    clips = root / "clips"
    assert main(["generate", str(run), "--out", str(clips), "--n", "2", "--no-grid", "--to-library", str(lib)]) == 0
    afile = root / "a_file.txt"
    afile.write_text("not a folder\n")
    return {"root": root, "data": data, "run": run, "lib": lib, "clip": sorted(clips.glob("*.mp4"))[0], "file": afile}


def unchanged(world):
    return snapshot(world["data"], world["run"], world["lib"])


def damaged_dataset(world, tmp_path, change) -> Path:
    """A copy of the dataset with `change(folder, index)` applied (index.json rewritten from what it returns)."""
    folder = tmp_path / "damaged"
    shutil.copytree(world["data"], folder)
    index = json.loads((folder / "index.json").read_text())
    new = change(folder, index)
    if new is not None:
        (folder / "index.json").write_text(json.dumps(new))
    return folder


# ----------------------------------------------------------------------------- argument ranges (exit 2)


def usage_cases(w):
    d, r, out = w["data"], w["run"], w["root"] / "never"
    return [
        (["prepare", "builtin:moving-mnist", out, "--size", "0"], "--size"),
        (["prepare", "builtin:moving-mnist", out, "--size", "100000"], "--size"),
        (["prepare", "builtin:moving-mnist", out, "--frames", "0"], "--frames"),
        (["prepare", "builtin:moving-mnist", out, "--frames", "-3"], "--frames"),
        (["prepare", "builtin:moving-mnist", out, "--stride", "0"], "--stride"),
        (["prepare", "builtin:moving-mnist", out, "--n", "0"], "--n"),
        (["prepare", "builtin:moving-mnist", out, "--fps", "0"], "--fps"),
        (["prepare", "builtin:moving-mnist", out, "--seed", "1e23"], "--seed"),
        (["prepare", "builtin:moving-mnist", out, "--seed", "-1"], "--seed"),
        (["prepare", "builtin:moving-mnist", out, "--digits", "0"], "--digits"),
        (["train", d, "--out", out, "--steps", "0"], "--steps"),
        (["train", d, "--out", out, "--steps", "-1"], "--steps"),
        (["train", d, "--out", out, "--batch-size", "0"], "--batch-size"),
        (["train", d, "--out", out, "--budget", "-5"], "--budget"),
        (["train", d, "--out", out, "--accum", "0"], "--accum"),
        (["train", d, "--out", out, "--seed", "1e23"], "--seed"),
        (["generate", r, "--out", out, "--n", "0"], "--n"),
        (["generate", r, "--out", out, "--n", "-1"], "--n"),
        (["generate", r, "--out", out, "--seed", "1e23"], "--seed"),
        (["generate", r, "--out", out, "--frames", "0"], "--frames"),
        (["generate", r, "--out", out, "--frames", "-3"], "--frames"),
        (["generate", r, "--out", out, "--time-scale", "0"], "--time-scale"),
        (["generate", r, "--out", out, "--truncation", "0"], "--truncation"),
        (["generate", r, "--out", out, "--step", "-2"], "--step"),
        (["evaluate", r, "--n", "0"], "--n"),
        (["evaluate", r, "--n", "1"], "--n"),
        (["evaluate", r, "--batch-size", "0"], "--batch-size"),
        (["evaluate", r, "--effnet-size", "0"], "--effnet-size"),
        (["serve", w["lib"], "--port", "70000"], "--port"),
        (["serve", w["lib"], "--port", "0"], "--port"),
        (["library", "ls", w["lib"], "--limit", "0"], "--limit"),
        (["library", "add", w["lib"], w["clip"], "--threshold", "2"], "--threshold"),
        (["library", "regenerate", w["lib"], "0"], "clip_id"),
        (["demo", "--budget", "0"], "--budget"),
    ]


def test_out_of_range_arguments_are_refused_at_parse_time(world, capsys):
    before = unchanged(world)
    cases = usage_cases(world)
    for args, needle in cases:
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err, 2, needle)
    assert not (world["root"] / "never").exists()
    assert unchanged(world) == before
    assert len(cases) >= 30


# ----------------------------------------------------------------------------- paths, configs, settings (exit 1)


def user_error_cases(w, tmp: Path):
    d, r, f, lib = w["data"], w["run"], w["file"], w["lib"]
    new = tmp / "new"
    broken_yaml = tmp / "broken.yaml"
    broken_yaml.write_text("model: {name: videogan\ntrain: [\n")
    list_yaml = tmp / "list.yaml"
    list_yaml.write_text("- 1\n- 2\n")
    typo_yaml = tmp / "typo.yaml"
    typo_yaml.write_text("train: {stepz: 3}\n")
    garbage = tmp / "garbage"
    garbage.mkdir()
    (garbage / "bad.mp4").write_bytes(b"\x00not a video" * 100)
    return [
        # prepare
        (["prepare", "builtin:moving-mnist", f, "--n", "2"], [str(f)]),
        (["prepare", "builtin:moving-mnist", f / "sub", "--n", "2"], [str(f), "not a folder"]),
        (["prepare", tmp / "missing", new], ["missing", "not a folder"]),
        (["prepare", f, new], [str(f), "not a folder"]),
        (["prepare", "builtin:nosuch", new], ["nosuch"]),
        (["prepare", "builtin:moving-mnist", new, "--split", "valid", "--n", "2"], ["valid"]),
        (["prepare", "builtin:moving-mnist", new, "--size", "33", "--n", "2"], ["--size 33", "32"]),
        (["prepare", "builtin:moving-mnist", new, "--size", "512", "--frames", "1024", "--n", "10000000"], ["GiB", "--no-check"]),
        # train: data, out, config
        (["train", tmp / "nodata", "--out", new], ["nodata", "not a prepared dataset"]),
        (["train", f, "--out", new], [str(f), "is a file"]),
        (["train", d, "--out", new, "--config", "nosuch"], ["unknown config preset 'nosuch'"]),
        (["train", d, "--out", new, "--config", tmp / "none.yaml"], ["none.yaml", "not found"]),
        (["train", d, "--out", new, "--config", broken_yaml], ["broken.yaml", "not valid YAML", "line"]),
        (["train", d, "--out", new, "--config", list_yaml], ["list.yaml", "mapping"]),
        (["train", d, "--out", new, "--config", typo_yaml], ["typo.yaml", "train.stepz"]),
        (["train", d, "--out", new, "--config", d], ["unknown config preset"]),
        (["train", d, "--out", new, "--set", "train.ema_beta=5"], ["train.ema_beta", "5"]),
        (["train", d, "--out", new, "--set", "train.ema_beta=-0.1"], ["train.ema_beta"]),
        (["train", d, "--out", new, "--set", "train.lr_g=-1"], ["train.lr_g"]),
        (["train", d, "--out", new, "--set", "train.lr_d=0"], ["train.lr_d"]),
        (["train", d, "--out", new, "--set", "train.lr_g=.inf"], ["train.lr_g"]),
        (["train", d, "--out", new, "--set", "train.betas=[0.5, 1.5]"], ["train.betas"]),
        (["train", d, "--out", new, "--set", "model.g_channels=0"], ["model.g_channels"]),
        (["train", d, "--out", new, "--set", "loss.penalty_weight=-1"], ["loss.penalty_weight"]),
        (["train", d, "--out", new, "--set", "train.lr_g=[1"], ["train.lr_g", "YAML"]),
        (["train", d, "--out", new, "--set", "train.steps=many"], ["train.steps"]),
        (["train", d, "--out", new, "--set", "nonsense"], ["SECTION.KEY=VALUE"]),
        (["train", d, "--out", new, "--model", "nosuch"], ["nosuch"]),
        (["train", d, "--out", new, "--loss", "nosuch"], ["nosuch"]),
        (["train", d, "--out", r], [str(r), "already holds a run"]),
        (["train", d, "--out", f], [str(f)]),
        (["train", "--resume", "--out", tmp / "missing"], ["missing", "no run to resume"]),
        # generate
        (["generate", tmp / "norun", "--out", new], ["norun", "no such run folder"]),
        (["generate", f, "--out", new], [str(f)]),
        (["generate", r, "--out", new, "--step", "999"], ["no checkpoint for step 999"]),
        (["generate", r, "--out", f], [str(f)]),
        (["generate", r, "--out", f / "sub"], [str(f)]),
        (["generate", r, "--out", new, "--format", "bmp"], ["bmp"]),
        (["generate", r, "--out", new, "--label", "3"], ["label"]),
        (["generate", d, "--out", new], [str(d)]),
        # evaluate, tokenize
        (["evaluate", tmp / "norun"], ["norun"]),
        (["evaluate", r, "--metrics", "nosuch"], ["nosuch"]),
        (["tokenize", r, d], ["not a VQ-VAE"]),
        # library
        (["library", "init", f], [str(f), "not a folder"]),
        (["library", "init", f / "sub"], [str(f)]),
        (["library", "ls", tmp / "nolib"], ["nolib", "not a vidgan library"]),
        (["library", "ls", lib, "--sort", "x; y"], ["sort 'x; y'"]),
        (["library", "ls", lib, "--text", "!!! ???"], ["no words"]),
        (["library", "add", lib, tmp / "none.mp4"], ["none.mp4"]),
        (["library", "add", lib, garbage / "bad.mp4"], ["bad.mp4", "not a readable video"]),
        (["library", "regenerate", lib, "999"], ["999"]),
        (["serve", tmp / "nolib"], ["nolib"]),
    ]


def test_bad_paths_configs_and_settings_give_one_line(world, capsys, tmp_path):
    before = unchanged(world)
    cases = user_error_cases(world, tmp_path)
    for args, needles in cases:
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err, 1, *needles)
        assert unchanged(world) == before, args
    assert world["file"].read_text() == "not a folder\n"
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").rglob("*.safetensors"))
    assert len(cases) >= 50


def test_debug_shows_the_traceback(world, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("VIDGAN_DEBUG", raising=False)
    with pytest.raises(Exception, match="not a prepared dataset"):
        main(["train", str(tmp_path / "nodata"), "--out", str(tmp_path / "r"), "--debug"])
    monkeypatch.setenv("VIDGAN_DEBUG", "0")
    code, _, err = run_cli(capsys, "train", tmp_path / "nodata", "--out", tmp_path / "r")
    assert_one_line_error(code, err, 1, "nodata")


def test_os_errors_become_one_line(world, capsys, monkeypatch, tmp_path):
    """Disk full and permission errors raised deep inside a command reach the user as one line."""
    import errno

    from vidgan import generation

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "clip_0000.mp4"))

    monkeypatch.setattr(generation, "generate", disk_full)
    code, _, err = run_cli(capsys, "generate", world["run"], "--out", tmp_path / "out")
    assert_one_line_error(code, err, 1, "clip_0000.mp4", "no space left", "run the same command again")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/videos")

    monkeypatch.setattr(generation, "generate", denied)
    code, _, err = run_cli(capsys, "generate", world["run"], "--out", tmp_path / "out")
    assert_one_line_error(code, err, 1, "/srv/videos", "permission denied")

    def bug(*args, **kwargs):
        raise TypeError("unexpected")

    monkeypatch.setattr(generation, "generate", bug)
    code, _, err = run_cli(capsys, "generate", world["run"], "--out", tmp_path / "out")
    assert_one_line_error(code, err, 1, "internal error", "--debug")


# ----------------------------------------------------------------------------- damaged datasets


def _truncate_shard(folder, index):
    shard = folder / index["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def _cut_index(folder, index):
    text = (folder / "index.json").read_text()
    (folder / "index.json").write_text(text[: len(text) // 2])


def _set_clip(key, value):
    def change(folder, index):
        index["clips"][3][key] = value
        return index

    return change


def _shard_file(name):
    def change(folder, index):
        index["shards"][0]["file"] = name
        return index

    return change


def _wrong_shape(folder, index):
    shard = folder / index["shards"][0]["file"]
    np.save(shard, np.zeros((4, 8, 8, 8, 1), np.uint8))


def _missing_shard(folder, index):
    (folder / index["shards"][0]["file"]).unlink()


def _incomplete(folder, index):
    index["complete"] = False
    return index


def _no_clips(folder, index):
    index["clips"] = []
    return index


DAMAGE = {
    "truncated shard": (_truncate_shard, ["shard", "truncated", "vidgan prepare"]),
    "cut index.json": (_cut_index, ["index.json", "damaged", "vidgan prepare"]),
    "offset out of range": (_set_clip("offset", 10_000), ["index.json", "clip 3", "offset 10000"]),
    "offset -1": (_set_clip("offset", -1), ["index.json", "clip 3", "offset -1"]),
    "shard out of range": (_set_clip("shard", 7), ["index.json", "clip 3", "shard 7"]),
    "label beyond the classes": (_set_clip("label", 99), ["index.json", "label 99"]),
    "offset not a number": (_set_clip("offset", "x"), ["index.json", "integer"]),
    "shard path outside": (_shard_file("../../../../etc/passwd"), ["index.json", "inside the dataset folder"]),
    "absolute shard path": (_shard_file("/etc/passwd"), ["index.json", "inside the dataset folder"]),
    "shard shape differs": (_wrong_shape, ["shard", "index.json says uint8"]),
    "missing shard": (_missing_shard, ["shard", "missing"]),
    "unfinished preparation": (_incomplete, ["did not finish"]),
    "no clips": (_no_clips, ["no clips"]),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_datasets_are_named_with_the_fix(world, capsys, tmp_path, case):
    change, needles = DAMAGE[case]
    folder = damaged_dataset(world, tmp_path, change)
    before = snapshot(folder)
    code, _, err = run_cli(capsys, "train", folder, "--config", "tiny", "--out", tmp_path / "run", "--steps", "1", "--no-progress")
    assert_one_line_error(code, err, 1, *needles)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert snapshot(folder) == before


def test_a_shard_symlinked_out_of_the_folder_is_refused(world, capsys, tmp_path):
    folder = damaged_dataset(world, tmp_path, lambda f, i: None)
    outside = tmp_path / "outside.npy"
    shard = folder / json.loads((folder / "index.json").read_text())["shards"][0]["file"]
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    code, _, err = run_cli(capsys, "train", folder, "--config", "tiny", "--out", tmp_path / "run", "--steps", "1")
    assert_one_line_error(code, err, 1, "leads outside the dataset folder")


# ----------------------------------------------------------------------------- odd source files


def test_odd_sources_are_skipped_and_listed(world, capsys, tmp_path):
    src = tmp_path / "src"
    mixed = src / "mixed"
    mixed.mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.full((32 if i % 2 else 48, 32, 3), i * 20, np.uint8)).save(mixed / f"f{i:02d}.png")
    (src / "loop.mp4").symlink_to(src / "loop.mp4")
    (src / "empty.mp4").write_bytes(b"")
    shutil.copy(world["clip"], src / "good.mp4")
    code, out, err = run_cli(capsys, "prepare", src, tmp_path / "out", "--size", "16", "--frames", "4", "--no-progress")
    assert code == 0, err
    skipped = {Path(s["path"]).name: s["reason"] for s in json.loads((tmp_path / "out" / "skipped.json").read_text())}
    assert "symlink loop" in skipped["loop.mp4"]
    assert "empty file" in skipped["empty.mp4"]
    assert "must have one size" in skipped["mixed"]
    assert "good.mp4" not in skipped


# ----------------------------------------------------------------------------- library


def test_a_byte_identical_re_add_returns_the_existing_clip(world, capsys):
    before = unchanged(world)
    code, out, err = run_cli(capsys, "library", "add", world["lib"], world["clip"])
    assert code == 0, err
    assert "already in the library as clip 1" in out
    assert unchanged(world) == before


def test_a_read_only_library_lists_but_refuses_edits(world, capsys, monkeypatch):
    from vidgan.library import catalog

    monkeypatch.setattr(catalog, "_read_only", lambda root, url: f"{root / 'library.db'} is not writable")
    before = unchanged(world)
    code, out, err = run_cli(capsys, "library", "ls", world["lib"])
    assert code == 0, err
    assert out.strip()
    code, _, err = run_cli(capsys, "library", "tag", world["lib"], "1", "--add", "keeper")
    assert_one_line_error(code, err, 1, "read-only", "library.db is not writable")
    assert unchanged(world) == before


def test_read_only_detection_follows_permissions(tmp_path, monkeypatch):
    from vidgan.library import catalog

    (tmp_path / "library.db").write_bytes(b"")
    assert catalog._read_only(tmp_path, f"sqlite:///{tmp_path / 'library.db'}") is None
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).name != "library.db")
    assert "is not writable" in catalog._read_only(tmp_path, f"sqlite:///{tmp_path / 'library.db'}")
    assert catalog._read_only(tmp_path, "postgresql://h/db") is None


def test_disk_full_during_training_says_how_to_continue(world, capsys, monkeypatch, tmp_path):
    import errno

    from vidgan.run import Run

    def full(self, step, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.checkpoint_dir(step)))

    monkeypatch.setattr(Run, "save_checkpoint", full)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", world["data"], "--config", "tiny", "--out", run, "--steps", "2", "--no-progress")
    assert_one_line_error(code, err, 1, "no space left", f"vidgan train --resume --out {run}")
