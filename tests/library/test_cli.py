"""`vidgan library ...` commands end to end (CliRunner on the library's own typer app)."""

import json
import zipfile

from typer.testing import CliRunner

from vidgan.data.video_write import write_video
from vidgan.library.cli import app

runner = CliRunner()


def run(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def ls_ids(lib, *args) -> list[int]:
    return [c["id"] for c in json.loads(run("ls", lib, "--json", *args))]


def test_library_commands(clip_files, mnist_clips, tmp_path):
    lib = tmp_path / "lib"
    assert "0 clips" in run("init", lib)
    out = run(
        "add",
        lib,
        clip_files[0],
        clip_files[1],
        "--tag",
        "sky",
        "--model",
        "videogan",
        "--label",
        "3",
        "--caption",
        "waves at dusk",
        "--score",
        "fvd2048_16f=250",
    )
    assert "as clip 1" in out and "as clip 2" in out
    run("add", lib, clip_files[2], "--model", "tgan", "--label", "cat", "--score", "fvd2048_16f=400")
    copy = write_video(tmp_path / "copy.webm", mnist_clips[0], fps=10)  # clip_files[0] re-encoded
    assert "near-duplicate of clip 1" in run("add", lib, copy)
    assert "already in the library as clip 4 (byte-identical)" in run("add", lib, copy)
    copy2 = write_video(tmp_path / "copy2.webm", mnist_clips[0], fps=12)  # another re-encode: different bytes
    assert "skipped" in run("add", lib, copy2, "--skip-duplicates")

    assert ls_ids(lib) == [1, 2, 3, 4]
    assert ls_ids(lib, "--model", "videogan") == [1, 2]
    assert ls_ids(lib, "--label", "cat") == [3] and ls_ids(lib, "--label", "3") == [1, 2]
    assert ls_ids(lib, "--tag", "sky") == [1, 2]
    assert ls_ids(lib, "--text", "dusk waves") == [1, 2]
    assert ls_ids(lib, "--min-score", "fvd2048_16f=300") == [3]
    assert ls_ids(lib, "--sort", "-fvd2048_16f") == [3, 1, 2, 4]
    assert ls_ids(lib, "--sort", "fvd2048_16f", "--limit", "1") == [1]
    listing = run("ls", lib)
    assert "4 clips" in listing and "videogan" in listing and "dup-of:1" in listing

    assert "1: night, sky" in run("tag", lib, 1, "--add", "night")
    assert "2: (no tags)" in run("tag", lib, 2, "--remove", "sky")
    assert ls_ids(lib, "--tag", "night") == [1]
    assert "deleted 1 clips: 4" in run("rm", lib, 4)
    assert ls_ids(lib) == [1, 2, 3] and ls_ids(lib, "--deleted") == [4]
    assert "removed 1 clips" in run("gc", lib)
    assert ls_ids(lib, "--deleted") == []

    assert "exported 2 clips" in run("export", lib, "--to", tmp_path / "sky", "--model", "videogan")
    manifest = json.loads((tmp_path / "sky" / "manifest.json").read_text())
    assert [c["id"] for c in manifest["clips"]] == [1, 2] and manifest["clips"][0]["provenance"]["model"] == "videogan"
    assert (tmp_path / "sky" / manifest["clips"][0]["export_file"]).read_bytes() == clip_files[0].read_bytes()
    run("export", lib, "--to", tmp_path / "some.zip", "--id", 3, "--id", 1)
    with zipfile.ZipFile(tmp_path / "some.zip") as zf:
        assert sorted(zf.namelist()) == ["clip_000001.mp4", "clip_000003.mp4", "manifest.json"]
        assert json.loads(zf.read("manifest.json"))["clips"][1]["scores"]["fvd2048_16f"] == 400

    assert run("check", lib).strip().endswith("ok")
    (tmp_path / "lib" / "store" / "zz").mkdir()
    (tmp_path / "lib" / "store" / "zz" / "stray.mp4").write_bytes(b"x")
    out = run("check", lib, code=1)
    assert "orphans" in out and "--repair" in out
    assert "removed 1 orphan files" in run("check", lib, "--repair")
    assert run("check", lib).strip().endswith("ok")


def test_errors_are_one_line(clip_files, tmp_path):
    lib = tmp_path / "lib"
    run("init", lib)
    cases = [
        (["ls", tmp_path / "nolib"], "not a vidgan library"),
        (["add", lib, tmp_path / "missing.mp4"], "no such file"),
        (["add", lib, clip_files[0], "--score", "fvd"], "METRIC=VALUE"),
        (["add", lib, clip_files[0], "--tag", "a,b"], "without commas"),
        (["ls", lib, "--min-score", "x=abc"], "METRIC=VALUE"),
        (["tag", lib, 99, "--add", "x"], "no clip 99"),
        (["rm", lib, 99], "no clip 99"),
        (["regenerate", lib, 99], "no clip 99"),
        (["export", lib, "--to", tmp_path / "e"], "no clips match"),
        (["tag", lib, 1], "nothing to do"),
        (["init", clip_files[0]], "not a folder"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.output)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    result = runner.invoke(app, ["add", str(lib), str(bad), str(clip_files[0])])
    assert result.exit_code == 1 and "as clip 1" in result.output and "error: " in result.output and "bad.mp4" in result.output


def test_commands_register_into_the_main_app(clip_files, tmp_path):
    """As vidgan's cli registers them: `vidgan library ...` and `vidgan serve LIB`."""
    import typer

    from vidgan.library.cli import serve

    main = typer.Typer()
    main.add_typer(app, name="library")
    main.command("serve")(serve)
    lib = tmp_path / "lib"
    assert runner.invoke(main, ["library", "init", str(lib)]).exit_code == 0
    assert runner.invoke(main, ["library", "add", str(lib), str(clip_files[0])]).exit_code == 0
    assert "1 clips" in runner.invoke(main, ["library", "ls", str(lib)]).output
    help_text = runner.invoke(main, ["serve", "--help"]).output
    assert "--host" in help_text and "127.0.0.1" in help_text and "--allow-edit" in help_text and "--port" in help_text
    result = runner.invoke(main, ["serve", str(tmp_path / "nolib")])
    assert result.exit_code == 1 and result.output.strip().startswith("error: ") and "not a vidgan library" in result.output
