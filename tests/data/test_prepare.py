"""vidgan prepare: folders of real video files -> shards that load the exact decoded pixels."""

import json
import os

import numpy as np
import pytest

from vidgan.data import prepare as prep
from vidgan.data.clips import ClipDataset, DatasetError
from vidgan.data.prepare import PrepareError, PrepareSettings, cut_clips, prepare
from vidgan.data.video_io import read_video
from vidgan.data.video_write import write_video


def moving_video(n_frames, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = [
        np.stack([(xx * 4 + t * 6 + base[0]) % 256, (yy * 5 + base[1]) % 256, np.full_like(xx, (t * 9 + base[2]) % 256)], -1)
        for t in range(n_frames)
    ]
    return np.asarray(frames, dtype=np.uint8)


@pytest.fixture()
def video_folder(tmp_path):
    src = tmp_path / "videos"
    write_video(src / "cats" / "a.mp4", moving_video(20, seed=1), fps=10)
    write_video(src / "cats" / "b.gif", moving_video(12, seed=2), fps=10)
    write_video(src / "dogs" / "c.webm", moving_video(18, seed=3), fps=10)
    write_video(src / "dogs" / "d.png", moving_video(9, seed=4))  # a folder of frames: dogs/d/
    # broken and odd inputs next to the good ones
    (src / "dogs" / "empty.mp4").write_bytes(b"")
    (src / "cats" / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (src / "cats" / "notes.avi").write_text("this is not a video\n")
    good = (src / "cats" / "a.mp4").read_bytes()
    (src / "cats" / "truncated.mp4").write_bytes(good[: len(good) * 2 // 5])
    write_video(src / "dogs" / "short.mp4", moving_video(3, seed=5), fps=10)
    os.close(os.open(os.path.join(os.fsencode(src / "cats"), b"bad\xffname.mp4"), os.O_CREAT | os.O_WRONLY))
    (src / "README.txt").write_text("ignored: not a video suffix")
    return src


def test_prepare_skips_broken_inputs_and_keeps_the_good(video_folder, tmp_path):
    out = tmp_path / "data"
    lines = []
    result = prepare(str(video_folder), out, PrepareSettings(size=16, frames=4, stride=4), progress=False, log=lines.append)
    skipped = {s["path"]: s["reason"] for s in json.loads((out / "skipped.json").read_text())}
    assert set(skipped) == {
        "dogs/empty.mp4",
        "cats/noise.mp4",
        "cats/notes.avi",
        "cats/truncated.mp4",
        "dogs/short.mp4",
        next(k for k in skipped if "bad" in k),
    }
    assert "0-byte" in skipped["dogs/empty.mp4"] or "empty" in skipped["dogs/empty.mp4"]
    assert "too short" in skipped["dogs/short.mp4"] and "--frames" in skipped["dogs/short.mp4"]
    assert any("UTF-8" in r for r in skipped.values())
    assert all("\n" not in r for r in skipped.values())
    data = ClipDataset(out)
    assert data.classes == ["cats", "dogs"]
    per_source = {}
    for c in data.clips:
        per_source.setdefault(c["source"], []).append(c)
    # 20 frames -> 5 clips, 12 -> 3, 18 -> 4, 9 -> 2
    assert {k: len(v) for k, v in per_source.items()} == {"cats/a.mp4": 5, "cats/b.gif": 3, "dogs/c.webm": 4, "dogs/d": 2}
    assert {c["label"] for c in per_source["cats/a.mp4"]} == {0} and {c["label"] for c in per_source["dogs/d"]} == {1}
    assert result.clips == len(data) == 14
    assert sum(ln.startswith("skipped ") for ln in lines) == 6  # one line per bad input
    assert "6 skipped" in lines[-1]


def test_shards_hold_exactly_the_decoded_pixels(video_folder, tmp_path):
    out = tmp_path / "data"
    prepare(str(video_folder), out, PrepareSettings(size=16, frames=4, stride=3), progress=False, log=lambda s: None)
    data = ClipDataset(out)
    for i, meta in enumerate(data.clips):
        want = read_video(video_folder / meta["source"], start=meta["start"], num_frames=4, size=16)
        clip, label = data[i]
        assert clip.dtype.is_floating_point is False
        assert np.array_equal(clip.numpy(), want), meta
    batch, labels = data.get_batch([3, 0, 3])
    assert batch.shape == (3, 4, 16, 16, 3) and np.array_equal(batch[0].numpy(), batch[2].numpy())
    assert labels.tolist() == [data.clips[3]["label"], data.clips[0]["label"], data.clips[3]["label"]]


def test_interrupted_prepare_continues_to_the_same_result(video_folder, tmp_path, monkeypatch):
    settings = PrepareSettings(size=16, frames=4)
    full = tmp_path / "full"
    prepare(str(video_folder), full, settings, progress=False, log=lambda s: None)

    out = tmp_path / "partial"
    monkeypatch.setattr(prep, "SHARD_BYTES", 1)  # commit a shard after every file
    real_iter = prep.iter_frames
    calls = {"n": 0}

    def interrupted(path, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third file decodes
        return real_iter(path, **kw)

    monkeypatch.setattr(prep, "iter_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(video_folder), out, settings, progress=False, log=lambda s: None)
    with pytest.raises(DatasetError, match="did not finish"):
        ClipDataset(out)
    # leftovers a crash could leave: a half-written shard and a shard the index never listed
    (out / ".shard_00009.npy.tmp").write_bytes(b"partial")
    (out / "shard_00007.npy").write_bytes(b"not listed")
    monkeypatch.setattr(prep, "iter_frames", real_iter)
    lines = []
    result = prepare(str(video_folder), out, settings, progress=False, log=lines.append)
    assert result.resumed and any("continuing" in ln for ln in lines)
    assert not (out / "shard_00007.npy").exists() and not (out / ".shard_00009.npy.tmp").exists()
    a, b = ClipDataset(full), ClipDataset(out)
    assert [(c["source"], c["start"]) for c in a.clips] == [(c["source"], c["start"]) for c in b.clips]
    assert np.array_equal(a.get_batch(range(len(a)))[0].numpy(), b.get_batch(range(len(b)))[0].numpy())
    assert json.loads((full / "skipped.json").read_text()) == json.loads((out / "skipped.json").read_text())


def test_rerun_settings_and_force(video_folder, tmp_path):
    out = tmp_path / "data"
    settings = PrepareSettings(size=16, frames=4)
    prepare(str(video_folder), out, settings, progress=False, log=lambda s: None)
    lines = []
    prepare(str(video_folder), out, settings, progress=False, log=lines.append)
    assert "already prepared" in lines[-1]
    with pytest.raises(PrepareError, match="other settings.*--force"):
        prepare(str(video_folder), out, PrepareSettings(size=16, frames=6), progress=False, log=lambda s: None)
    result = prepare(str(video_folder), out, PrepareSettings(size=16, frames=6), force=True, progress=False, log=lambda s: None)
    assert ClipDataset(out).frames == 6 and result.clips == len(ClipDataset(out))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("x")
    with pytest.raises(PrepareError, match="not empty"):
        prepare(str(video_folder), stranger, settings, progress=False, log=lambda s: None)
    with pytest.raises(PrepareError, match="not a folder"):
        prepare(str(tmp_path / "missing"), tmp_path / "o", settings, progress=False)
    with pytest.raises(DatasetError, match="vidgan prepare"):
        ClipDataset(tmp_path / "missing")


def test_cut_clips_windows():
    frames = (np.full((1, 1, 1), i, np.uint8) for i in range(10))
    got = [(start, clip[:, 0, 0, 0].tolist()) for start, clip in cut_clips(frames, 3, 4)]
    assert got == [(0, [0, 1, 2]), (4, [4, 5, 6])]
    overlap = [s for s, _ in cut_clips((np.zeros((1, 1, 1), np.uint8) for _ in range(6)), 4, 1)]
    assert overlap == [0, 1, 2]


def test_builtin_datasets_prepare_with_labels_and_captions(tmp_path):
    prepare("builtin:shapes", tmp_path / "shapes", PrepareSettings(size=32, frames=8), n=12, seed=1, progress=False, log=lambda s: None)
    data = ClipDataset(tmp_path / "shapes")
    assert data.classes == ["circle", "square", "triangle"] and data.channels == 3
    assert all(data.classes[c["label"]] in c["caption"] for c in data.clips)
    prepare("builtin:moving-mnist", tmp_path / "mm", PrepareSettings(size=32, frames=8), n=6, seed=1, progress=False, log=lambda s: None)
    mm = ClipDataset(tmp_path / "mm")
    assert mm.channels == 1 and len(mm) == 6 and mm[0][0].shape == (8, 32, 32, 1)
    with pytest.raises(ValueError, match="moving-mnist"):
        prepare("builtin:nope", tmp_path / "x", PrepareSettings(), progress=False)


def test_builtin_sample_clips_are_real_video(tmp_path):
    result = prepare("builtin:sample-clips", tmp_path / "s", PrepareSettings(size=32, frames=16), progress=False, log=lambda s: None)
    data = ClipDataset(tmp_path / "s")
    sources = {c["source"] for c in data.clips}
    assert sources == {"bikes.mp4", "carphone_pristine.mp4"}
    assert result.clips == 250 // 16 + 120 // 16
    clip = data[0][0].numpy().astype(np.float32)
    assert clip.std() > 20 and np.abs(np.diff(clip, axis=0)).mean() > 1  # textured and moving
