"""Ingest: content-addressed files, near-duplicates, crash consistency, check/repair, two writers at once."""

import multiprocessing
import os
import time
import traceback

import numpy as np
import pytest
from PIL import Image

from vidgan.data.video_io import read_video
from vidgan.data.video_write import write_video
from vidgan.library import ingest
from vidgan.library.catalog import Library
from vidgan.library.hashing import frames_hash, perceptual_hash, phash_distance, sha256_file
from vidgan.library.ingest import DEFAULT_THRESHOLD, Ingester
from vidgan.library.maintenance import check_library
from vidgan.library.queries import ClipQuery, find_clips, get_clip


def store_files(lib: Library) -> set[str]:
    files = {p.relative_to(lib.root).as_posix() for p in lib.store.rglob("*") if p.is_file()}
    return {f for f in files if not f.startswith("store/tmp/")}


def clip_ids(lib: Library) -> list[int]:
    with lib.session() as s:
        return [c.id for c in find_clips(lib, s, ClipQuery(sort="id", include_deleted=True))[1]]


@pytest.fixture
def lib(tmp_path):
    with Library.init(tmp_path / "lib") as library:
        yield library


def test_files_are_content_addressed_with_poster_and_preview(lib, clip_files, mnist_clips):
    result = Ingester(lib).add_file(clip_files[0], tags=["a"], caption="two digits")
    with lib.session() as s:
        clip = get_clip(s, result.clip_id)
        sha, path, frames_sha = clip.sha256, clip.path, clip.frames_sha256
    assert sha == sha256_file(clip_files[0]) and path == f"store/{sha[:2]}/{sha}.mp4"
    assert (lib.root / path).read_bytes() == clip_files[0].read_bytes()
    assert frames_sha == frames_hash(read_video(clip_files[0]))
    with Image.open(lib.root / f"store/{sha[:2]}/{sha}.poster.png") as poster:
        assert poster.size == (32, 32)
    with Image.open(lib.root / f"store/{sha[:2]}/{sha}.preview.webp") as preview:
        assert preview.format == "WEBP" and preview.n_frames == 8  # animated
    # a gray clip and its 3-channel video hash the same: the generator's output and its lossless file agree
    assert frames_hash(mnist_clips[0]) == frames_hash(np.repeat(mnist_clips[0], 3, axis=-1))


def test_frame_folder_is_stored_losslessly(lib, mnist_clips, tmp_path):
    folder = write_video(tmp_path / "frames.png", mnist_clips[3])  # a folder of png frames
    result = Ingester(lib).add_file(folder, fps=10.0)
    with lib.session() as s:
        clip = get_clip(s, result.clip_id)
    assert clip.format == "apng" and clip.frames == 8 and clip.fps == 10.0
    assert np.array_equal(read_video(lib.root / clip.path), np.repeat(mnist_clips[3], 3, axis=-1))
    assert clip.frames_sha256 == frames_hash(mnist_clips[3])


def test_reencoded_clip_is_a_duplicate_and_different_clips_are_not(lib, mnist_clips, tmp_path):
    clips = mnist_clips[:6]
    originals = [write_video(tmp_path / f"c{i}.mp4", c, fps=10) for i, c in enumerate(clips)]
    ingester = Ingester(lib)
    first = [ingester.add_file(p) for p in originals]
    assert [r.status for r in first] == ["added"] * 6  # six different clips: no duplicates among them

    hashes = [perceptual_hash(read_video(p)) for p in originals]
    different = [phash_distance(hashes[i], hashes[j]) for i in range(6) for j in range(i + 1, 6)]
    assert min(different) > 2 * DEFAULT_THRESHOLD

    reencoded = [
        write_video(tmp_path / "again.webm", clips[2], fps=10),
        write_video(tmp_path / "again.gif", clips[4], fps=10),
        write_video(tmp_path / "again_low.mp4", clips[5], fps=10, quality="medium"),
    ]
    flagged = [ingester.add_file(p) for p in reencoded]
    assert [(r.status, r.duplicate_of) for r in flagged] == [
        ("duplicate", first[2].clip_id),
        ("duplicate", first[4].clip_id),
        ("duplicate", first[5].clip_id),
    ]
    assert all(r.distance <= DEFAULT_THRESHOLD for r in flagged)

    skipping = Ingester(lib, skip_duplicates=True)
    skipped = skipping.add_file(write_video(tmp_path / "again2.webm", clips[0], fps=10))
    assert skipped.status == "skipped" and skipped.clip_id is None and skipped.duplicate_of == first[0].clip_id
    assert skipping.add_file(write_video(tmp_path / "new.mp4", mnist_clips[9], fps=10)).status == "added"
    assert len(clip_ids(lib)) == 10
    assert not list((lib.store / "tmp").iterdir())


@pytest.mark.parametrize("where", ["insert_rows", "place_files"])
def test_exception_mid_ingest_leaves_a_consistent_library(backend_lib, clip_files, monkeypatch, where):
    lib = backend_lib
    Ingester(lib).add_file(clip_files[0])
    before_files, before_ids = store_files(lib), clip_ids(lib)
    original = getattr(ingest, where)

    def crash(*args, **kwargs):
        original(*args, **kwargs)  # the rows are inserted (not committed) / the files are in place
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(ingest, where, crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Ingester(lib).add_file(clip_files[1])
    monkeypatch.undo()
    assert clip_ids(lib) == before_ids and store_files(lib) == before_files
    assert not list((lib.store / "tmp").iterdir())
    report = check_library(lib, grace=0)
    assert report.problems == 0, report.lines()
    # the same clip can be added afterwards; identical bytes again are the existing clip (nothing written)
    assert Ingester(lib).add_file(clip_files[1]).status == "added"
    monkeypatch.setattr(ingest, where, crash)
    again = Ingester(lib, threshold=0).add_file(clip_files[0])
    assert (again.status, again.clip_id) == ("exists", before_ids[0])
    # identical bytes of a deleted clip are added anew; a failed add never loses the file they share
    from vidgan.library.maintenance import soft_delete

    soft_delete(lib, [before_ids[0]])
    with pytest.raises(RuntimeError):
        Ingester(lib, threshold=0).add_file(clip_files[0])
    monkeypatch.undo()
    assert check_library(lib, grace=0).problems == 0
    soft_delete(lib, [before_ids[0]], undo=True)
    assert check_library(lib, grace=0, verify=True).problems == 0


def _forked(target, *args) -> multiprocessing.Process:
    """A child process that shares this one's imports (no second torch import: seconds on 2 cores).
    It opens its own connections; it leaves with os._exit so it never touches the parent's."""

    def run():
        try:
            target(*args)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)

    return multiprocessing.get_context("fork").Process(target=run)


def _ingest_then_die(root, path):
    original = ingest.place_files

    def die(*args, **kwargs):
        original(*args, **kwargs)
        os._exit(17)  # killed between placing the files and committing the rows

    ingest.place_files = die
    Ingester(Library.open(root)).add_file(path)


@pytest.mark.slow  # starts a process
def test_killed_process_leaves_orphans_that_repair_removes(backend_lib, clip_files):
    """A hard crash (the process dies between placing the files and committing): no row, orphan files."""
    lib = backend_lib
    lib.engine.dispose()
    child = _forked(_ingest_then_die, lib.root, clip_files[2])
    child.start()
    child.join(60)
    assert child.exitcode == 17
    assert clip_ids(lib) == []
    report = check_library(lib, grace=0)
    assert len(report.orphans) == 3 and report.missing_files == []  # clip, poster, preview: nothing trusts them
    check_library(lib, repair=True, grace=0)
    assert store_files(lib) == set() and check_library(lib, grace=0).problems == 0


def test_check_repair_fixes_planted_problems(lib, clip_files, tmp_path):
    ingester = Ingester(lib)
    ids = [ingester.add_file(p).clip_id for p in clip_files[:4]]
    assert check_library(lib, verify=True, grace=0).problems == 0
    with lib.session() as s:
        clips = {i: get_clip(s, i) for i in ids}
    (lib.root / clips[ids[0]].path).unlink()  # a row without its file
    (lib.root / clips[ids[1]].preview_path).unlink()  # a missing preview
    orphan = lib.store / "ab" / ("ab" + "0" * 62 + ".mp4")  # a file without a row
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"stray")
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (lib.store / "cd").mkdir(exist_ok=True)
    (lib.store / "cd" / "link.mp4").symlink_to(outside)  # a symlink out of the root
    stale = lib.store / "tmp" / "leftover.part"
    stale.write_bytes(b"half")
    os.utime(stale, (1, 1))  # old: from a crash long ago
    fresh = lib.store / "tmp" / "in-progress.part"
    fresh.write_bytes(b"being written")
    with open(lib.root / clips[ids[2]].path, "r+b") as fh:  # bit rot
        fh.seek(100)
        fh.write(b"\x00\x01\x02")

    report = check_library(lib, verify=True)
    assert report.missing_files == [ids[0]] and report.missing_derived == [ids[1]] and report.corrupt == [ids[2]]
    assert sorted(report.orphans) == [orphan.relative_to(lib.root).as_posix(), "store/cd/link.mp4"]
    assert report.stale_tmp == ["store/tmp/leftover.part"]

    repaired = check_library(lib, repair=True, verify=True)
    assert any("orphan" in line for line in repaired.lines())
    after = check_library(lib, verify=True)
    assert after.corrupt == [ids[2]] and after.problems == 1  # reported, never "fixed" by deleting
    assert clip_ids(lib) == ids[1:]
    assert (lib.root / clips[ids[1]].preview_path).is_file()
    assert not orphan.exists() and not (lib.store / "cd" / "link.mp4").exists() and outside.read_text() == "not yours"
    assert not stale.exists() and fresh.exists()


def _ingest_folder(root, folder, go):
    while not go.exists():  # start together
        time.sleep(0.005)
    ingester = Ingester(Library.open(root), threshold=0)
    for path in sorted(folder.iterdir()):
        ingester.add_file(path)


@pytest.mark.slow  # starts two processes
def test_two_processes_ingesting_at_once_lose_nothing(backend_lib, mnist_clips, tmp_path):
    lib = backend_lib
    folders = []
    for k in range(2):
        folder = tmp_path / f"batch{k}"
        folder.mkdir()
        for i in range(6):
            write_video(folder / f"c{i}.gif", mnist_clips[(6 * k + i) % 16], fps=10)
        folders.append(folder)
    go = tmp_path / "go"
    lib.engine.dispose()
    children = [_forked(_ingest_folder, lib.root, folder, go) for folder in folders]
    for child in children:
        child.start()
    go.touch()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    with lib.session() as s:
        _, clips = find_clips(lib, s, ClipQuery())
        names = sorted(c.source_name for c in clips)
    assert len(clips) == 12 and names == sorted([f"c{i}.gif" for i in range(6)] * 2)
    assert check_library(lib, verify=True, grace=0).problems == 0
