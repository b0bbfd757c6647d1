"""`vidgan generate --to-library` files clips with provenance; `regenerate` makes them again bit for bit."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from vidgan.cli import app as main_app
from vidgan.library.catalog import Library
from vidgan.library.cli import app as library_app
from vidgan.library.hashing import frames_hash, sha256_file
from vidgan.library.provenance import regenerate
from vidgan.library.queries import ClipQuery, find_clips, get_clip
from vidgan.library.tables import LibraryError
from vidgan.pipeline import VideoPipeline
from vidgan.run import Run

runner = CliRunner()


def test_generate_to_library_records_provenance_and_regenerates(class_run, tmp_path):
    lib_dir = tmp_path / "lib"
    result = runner.invoke(
        main_app,
        [
            "generate",
            str(class_run),
            "--n",
            "5",
            "--seed",
            "7",
            "--out",
            str(tmp_path / "out"),
            "--truncation",
            "1.5",
            "--to-library",
            str(lib_dir),
            "--no-grid",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"filed 5 clips in library {lib_dir}" in result.output and "vidgan serve" in result.output
    pipe = VideoPipeline.from_pretrained(class_run)
    want = pipe(n=5, seed=7, truncation=1.5)

    with Library.open(lib_dir) as lib, lib.session() as s:
        total, clips = find_clips(lib, s, ClipQuery(sort="id"))
        assert total == 5
        weights = Run(class_run).latest() / "generator_ema.safetensors"
        for i, clip in enumerate(clips):
            p = clip.provenance
            assert (p.model, p.step, p.seed, p.n, p.index, p.truncation, p.ema) == ("videogan", 2, 7, 5, i, 1.5, True)
            assert p.run == str(class_run.resolve()) and p.checkpoint_sha256 == sha256_file(weights)
            assert p.label == i % 10 and p.label_name == str(i % 10)  # default labels cycle through the classes
            assert p.output_sha256 == frames_hash(want[i])
            settings = p.settings_dict()
            assert settings["call"]["batch_size"] == 16 and settings["format"] == "mp4" and settings["model_config"]["condition"] == "class"
        clip_id = clips[3].id
        # the library's copy is the file generate wrote
        assert sha256_file(lib.root / clips[3].path) == sha256_file(tmp_path / "out" / "clip_00003.mp4")

        again = regenerate(lib, clip_id)
    assert again.output_match and again.decoded_match and again.identical
    assert np.array_equal(again.frames, want[3])

    # the command says so too; a changed checkpoint is refused rather than "regenerated" wrongly
    result = runner.invoke(library_app, ["regenerate", str(lib_dir), str(clip_id), "--out", str(tmp_path / "again.mp4")])
    assert result.exit_code == 0, result.output
    assert "generator output identical; decoded frames identical" in result.output and (tmp_path / "again.mp4").is_file()
    moved = tmp_path / "moved_run"
    shutil.copytree(class_run, moved)
    result = runner.invoke(library_app, ["regenerate", str(lib_dir), str(clip_id), "--run", str(moved)])
    assert result.exit_code == 0, result.output  # a run that moved: same weights, found by --run
    weights_copy = Run(moved).latest() / "generator_ema.safetensors"
    weights_copy.write_bytes(weights_copy.read_bytes()[:-4] + b"\0\0\0\0")
    result = runner.invoke(library_app, ["regenerate", str(lib_dir), str(clip_id), "--run", str(moved)])
    assert result.exit_code == 1 and "not the checkpoint the clip was made with" in result.output
    result = runner.invoke(library_app, ["regenerate", str(lib_dir), str(clip_id), "--run", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "is not there" in result.output


def test_regenerate_detects_a_clip_that_does_not_match(class_run, tmp_path):
    lib_dir = tmp_path / "lib"
    result = runner.invoke(
        main_app,
        [
            "generate",
            str(class_run),
            "--n",
            "2",
            "--seed",
            "1",
            "--label",
            "4",
            "--format",
            "png",
            "--out",
            str(tmp_path / "out"),
            "--to-library",
            str(lib_dir),
            "--no-grid",
        ],
    )
    assert result.exit_code == 0, result.output
    with Library.open(lib_dir) as lib:
        with lib.session() as s:
            clip = get_clip(s, 2)
            assert clip.format == "apng" and clip.provenance.label == 4  # png frames: stored losslessly
            assert clip.frames_sha256 == clip.provenance.output_sha256  # lossless: the file holds the generator's pixels
            assert regenerate(lib, 2).identical
            # tamper with the recorded call: the regenerated clip no longer matches, and says so
            settings = clip.provenance.settings_dict()
            settings["call"]["seed"] = 2
            clip.provenance.settings = json.dumps(settings)
            s.commit()
        tampered = regenerate(lib, 2)
        assert tampered.output_match is False and not tampered.decoded_match and not tampered.identical
    result = runner.invoke(library_app, ["regenerate", str(lib_dir), "2"])
    assert result.exit_code == 1 and "DIFFERENT" in result.output


def test_library_add_from_a_generate_folder_keeps_provenance(class_run, tmp_path):
    out = tmp_path / "out"
    assert (
        runner.invoke(
            main_app, ["generate", str(class_run), "--n", "3", "--seed", "9", "--format", "webm", "--out", str(out), "--no-grid"]
        ).exit_code
        == 0
    )
    lib_dir = tmp_path / "lib"
    assert runner.invoke(library_app, ["init", str(lib_dir)]).exit_code == 0
    result = runner.invoke(library_app, ["add", str(lib_dir), *map(str, sorted(out.glob("clip_*.webm")))])
    assert result.exit_code == 0, result.output
    with Library.open(lib_dir) as lib:
        with lib.session() as s:
            clip = get_clip(s, 3)
            assert (clip.provenance.seed, clip.provenance.index, clip.provenance.label, clip.format) == (9, 2, 2, "webm")
        assert regenerate(lib, 3).identical
        assert runner.invoke(library_app, ["regenerate", str(lib_dir), "1"]).exit_code == 0


def test_clip_without_provenance_cannot_be_regenerated(clip_files, tmp_path):
    lib_dir = tmp_path / "lib"
    runner.invoke(library_app, ["init", str(lib_dir)])
    runner.invoke(library_app, ["add", str(lib_dir), str(clip_files[0])])
    with Library.open(lib_dir) as lib, pytest.raises(LibraryError, match="no generation provenance"):
        regenerate(lib, 1)


def test_run_scores_and_first_frames_are_filed(class_run, tmp_path):
    """Scores of the checkpoint (RUN/metrics.jsonl, when an evaluation wrote one) go with its clips;
    a first frame is kept losslessly in the library so re-generation does not need the original image."""
    from vidgan.library.provenance import run_scores
    from vidgan.library.store import load_asset, store_asset

    run = tmp_path / "run"
    shutil.copytree(class_run, run)
    lines = [
        {
            "metric": "fvd2048_16f",
            "value": 321.5,
            "results": {"fvd2048_16f": 321.5, "is16": float("nan")},
            "step": 2,
            "protocol": {"clips": "2048 clips of 16 frames", "seed": 0},
        },
        {"step": 1, "results": {"fvd2048_16f": 999.0}},
        "not json",
        {"step": 2, "results": "oops"},
    ]
    (run / "metrics.jsonl").write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    assert list(run_scores(run, 2)) == ["fvd2048_16f"] and run_scores(run, 2)["fvd2048_16f"][0] == 321.5
    assert run_scores(run, 3) == {} and run_scores(tmp_path / "nowhere", 2) == {}
    lib_dir = tmp_path / "lib"
    assert (
        runner.invoke(
            main_app, ["generate", str(run), "--n", "2", "--out", str(tmp_path / "out"), "--to-library", str(lib_dir), "--no-grid"]
        ).exit_code
        == 0
    )
    with Library.open(lib_dir) as lib:
        with lib.session() as s:
            clips = find_clips(lib, s, ClipQuery(min_scores={"fvd2048_16f": 300}))[1]
            protocol = {sc.metric: sc.protocol for sc in clips[0].scores}["fvd2048_16f"]
            assert len(clips) == 2 and "not of this clip alone" in protocol and "2048 clips of 16 frames" in protocol
        rng = np.random.default_rng(0)
        for channels in (1, 3):
            frame = rng.integers(0, 256, (32, 32, channels), dtype=np.uint8)
            store_asset(lib, frame)
            assert np.array_equal(load_asset(lib, frames_hash(frame[None]), channels), frame)
