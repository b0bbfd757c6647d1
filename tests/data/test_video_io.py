"""video_io and video_write: round trips per format, resizing, resampling, frame folders, errors, grids, model layout.

Every fixture makes its own tiny video: smooth gradients or flat colours, so that lossy
codecs stay within a few levels and the tolerances below mean something.
"""

import warnings

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidgan.data.video_io import VideoError, iter_frames, probe, read_video, to_model, to_uint8
from vidgan.data.video_write import make_grid, write_grid, write_video

T, H, W = 20, 40, 48


def gradient_clip(frames=T, height=H, width=W):
    """Smooth colour ramps that move over time; no wrap-around, so no sharp edges."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    red = 20 + x * 180 // max(width - 1, 1) + t * 2
    green = 30 + y * 170 // max(height - 1, 1)
    blue = 60 + t * 5 + 0 * x
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def brightness_clip(frames=T, height=24, width=32, step=12):
    """Flat gray frames whose level encodes the frame index: level(i) = 10 + step * i."""
    levels = (10 + step * np.arange(frames)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (frames, height, width, 3)).copy()


def frame_index(frame, step=12):
    return int(round((float(frame.mean()) - 10) / step))


def mean_abs_error(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ----------------------------------------------------------------------------- round trips

# Mean absolute error in levels (0..255) after write + read, on gradient_clip at "high" quality.
# png is lossless; gif keeps 256 colours per frame, so the ramps are quantised.
TOLERANCE = {".png": 0.0, ".mp4": 4.0, ".webm": 4.0, ".gif": 12.0}


@pytest.mark.parametrize("suffix", [".png", ".mp4", ".webm", ".gif"])
def test_round_trip(tmp_path, suffix):
    clip = gradient_clip()
    written = write_video(tmp_path / f"clip{suffix}", clip, fps=8.0)
    assert written.exists()
    if suffix == ".png":
        assert written == tmp_path / "clip" and written.is_dir()
        assert sorted(p.name for p in written.iterdir())[:2] == ["frame_00000.png", "frame_00001.png"]

    back = read_video(written)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert mean_abs_error(back, clip) <= TOLERANCE[suffix]

    info = probe(written)
    assert (info.frames, info.width, info.height) == (T, W, H)
    if suffix == ".png":
        assert info.fps == 25.0 and info.codec == "images"  # a frame folder has no timing of its own
    elif suffix == ".gif":
        assert info.fps == pytest.approx(8.0, rel=0.05)  # delays are whole centiseconds: 13, 12, 13, ...
    else:
        assert info.fps == pytest.approx(8.0, rel=0.01)
        assert info.duration == pytest.approx(T / 8.0, rel=0.05)
    # nothing but the result in the folder: the temporary file was renamed, not left behind
    assert [p.name for p in tmp_path.iterdir()] == [written.name]


def test_gray_writes_and_reads_back_as_rgb(tmp_path):
    gray = gradient_clip()[..., 1:2]
    for name in ["gray.mp4", "gray.png"]:
        back = read_video(write_video(tmp_path / name, gray))
        assert back.shape == (T, H, W, 3)
        assert mean_abs_error(back, np.repeat(gray, 3, axis=-1)) <= 4.0


def test_odd_size_mp4_is_padded_to_even(tmp_path):
    clip = gradient_clip(frames=6, height=27, width=33)
    path = write_video(tmp_path / "odd.mp4", clip)
    info = probe(path)
    assert (info.width, info.height) == (34, 28)
    back = read_video(path)
    assert back.shape == (6, 28, 34, 3)
    assert mean_abs_error(back[:, :27, :33], clip) <= 4.0
    # the added row and column repeat the edge
    assert mean_abs_error(back[:, 27, :33], clip[:, 26]) <= 6.0
    assert mean_abs_error(back[:, :27, 33], clip[:, :, 32]) <= 6.0


def test_write_rejects_unknown_suffix_and_bad_frames(tmp_path):
    with pytest.raises(ValueError, match=r"\.flv.*\.mp4"):
        write_video(tmp_path / "clip.flv", gradient_clip())
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "clip.mp4", gradient_clip().astype(np.float32))
    assert list(tmp_path.iterdir()) == []


def test_write_creates_parents_and_replaces_existing(tmp_path):
    first = write_video(tmp_path / "a" / "b" / "clip.png", brightness_clip(frames=5))
    second = write_video(tmp_path / "a" / "b" / "clip.png", brightness_clip(frames=3))
    assert first == second
    assert len(list(second.iterdir())) == 3
    assert sorted(p.name for p in second.parent.iterdir()) == ["clip"]


# ----------------------------------------------------------------------------- resizing


def thirds_clip(frames=4, height=40, width=120):
    """Left third red, middle third green, right third blue."""
    clip = np.zeros((frames, height, width, 3), np.uint8)
    third = width // 3
    clip[:, :, :third] = (220, 20, 20)
    clip[:, :, third : 2 * third] = (20, 220, 20)
    clip[:, :, 2 * third :] = (20, 20, 220)
    return clip


@pytest.mark.parametrize("suffix", [".mp4", ".png"])
def test_iter_frames_size_crops_the_centre(tmp_path, suffix):
    wide = write_video(tmp_path / f"wide{suffix}", thirds_clip())
    frames = list(iter_frames(wide, size=32))
    assert len(frames) == 4
    for frame in frames:
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
        red, green, blue = frame.reshape(-1, 3).mean(axis=0)
        assert green > 200 and red < 40 and blue < 40  # the shorter side became 32, the middle third survived

    tall = write_video(tmp_path / f"tall{suffix}", thirds_clip(height=120, width=40).transpose(0, 2, 1, 3))
    assert read_video(tall, size=16).shape == (4, 16, 16, 3)
    assert read_video(tall, size=64).shape == (4, 64, 64, 3)  # upscaling works too


# ----------------------------------------------------------------------------- resampling


@pytest.fixture(scope="module")
def ten_fps_mp4(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clips") / "ten.mp4", brightness_clip(), fps=10.0)


def test_fps_resampling_follows_time(ten_fps_mp4):
    assert [frame_index(f) for f in iter_frames(ten_fps_mp4)] == list(range(T))

    half = read_video(ten_fps_mp4, fps=5)
    assert half.shape[0] == 10
    assert [frame_index(f) for f in half] == list(range(0, T, 2))  # every other frame dropped

    double = read_video(ten_fps_mp4, fps=20)
    assert double.shape[0] == 40
    assert [frame_index(f) for f in double] == [k // 2 for k in range(40)]  # every frame shown twice

    same = read_video(ten_fps_mp4, fps=10)
    assert same.shape[0] == T


def test_fps_resampling_of_gif_ignores_centisecond_delays(tmp_path):
    # 8 fps is stored as delays of 13, 12, 13, ... cs, so frame i starts up to 5 ms after i / 8 s:
    # the count must still be exact, and each output frame at most one source frame late.
    gif = write_video(tmp_path / "eight.gif", brightness_clip(), fps=8)
    double = [frame_index(f) for f in read_video(gif, fps=16)]
    assert len(double) == 40 and sorted(double) == double and set(double) == set(range(T))
    assert all(k // 2 - 1 <= index <= k // 2 for k, index in enumerate(double))
    assert [frame_index(f) for f in read_video(gif, fps=4)] == list(range(0, T, 2))


def test_read_video_window_and_too_few_frames(ten_fps_mp4):
    window = read_video(ten_fps_mp4, start=5, num_frames=4, size=16)
    assert window.shape == (4, 16, 16, 3)
    assert [frame_index(f) for f in window] == [5, 6, 7, 8]
    with pytest.raises(VideoError, match=r"ten\.mp4.*only 5 frames"):
        read_video(ten_fps_mp4, start=15, num_frames=10)


# ----------------------------------------------------------------------------- frame folders


def test_frame_folder_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    clip = brightness_clip(frames=12)
    for i, frame in enumerate(clip):  # unpadded numbers: plain sorting would put frame_10 before frame_2
        Image.fromarray(frame).save(folder / f"frame_{i}.png")
    (folder / "notes.txt").write_text("not a frame")

    info = probe(folder)
    assert (info.frames, info.width, info.height, info.fps, info.codec) == (12, 32, 24, 25.0, "images")
    back = read_video(folder)
    np.testing.assert_array_equal(back, clip)
    assert read_video(folder, size=8).shape == (12, 8, 8, 3)
    assert [frame_index(f) for f in read_video(folder, fps=12.5)] == list(range(0, 12, 2))


def test_frame_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match=r"empty.*no images"):
        probe(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(brightness_clip(frames=1)[0]).save(broken / "0001.png")
    (broken / "0002.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match=r"0002\.png.*frame 1"):
        read_video(broken)


# ----------------------------------------------------------------------------- errors


def make_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def make_bad_file(kind, tmp_path, valid_mp4):
    if kind == "missing":
        return tmp_path / "missing.mp4"
    path = (
        tmp_path
        / {"empty": "empty.mp4", "random": "random.mp4", "text": "notes.avi", "truncated": "truncated.mp4", "audio": "audio.mp4"}[kind]
    )
    if kind == "empty":
        path.touch()
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "text":
        path.write_text("this is a shopping list, not a video\n" * 20)
    elif kind == "truncated":
        data = valid_mp4.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.4)])
    elif kind == "audio":
        make_audio_only(path)
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "no such file"),
        ("empty", "0 bytes"),
        ("random", "not a readable video"),
        ("text", "not a readable video"),
        ("truncated", ""),
        ("audio", "no video stream"),
    ],
)
def test_bad_files_raise_video_error_naming_the_file(tmp_path, ten_fps_mp4, kind, words):
    path = make_bad_file(kind, tmp_path, ten_fps_mp4)
    for read in (probe, read_video, lambda p: list(iter_frames(p))):
        with pytest.raises(VideoError) as caught:
            read(path)
        message = str(caught.value)
        assert str(path) in message and words in message and "\n" not in message


def test_truncated_webm_reads_short(tmp_path):
    # webm has no index up front, so a cut file still opens; asking for all frames must fail clearly
    data = write_video(tmp_path / "full.webm", gradient_clip()).read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(VideoError, match=r"cut\.webm.*only \d+ frames"):
        read_video(cut, num_frames=T)


# ----------------------------------------------------------------------------- grids


def test_make_grid_places_each_clip():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (5, 3, 4, 6, 3), dtype=np.uint8)
    grid = make_grid(clips, pad=2, pad_value=7)  # 5 clips -> 3 per row, 2 rows
    assert grid.shape == (3, 2 + 2 * (4 + 2), 2 + 3 * (6 + 2), 3)
    for k in range(5):
        top, left = 2 + (k // 3) * 6, 2 + (k % 3) * 8
        np.testing.assert_array_equal(grid[:, top : top + 4, left : left + 6], clips[k])
    assert (grid[:, :2] == 7).all() and (grid[:, :, :2] == 7).all()
    assert (grid[:, 8:, 18:] == 7).all()  # the empty sixth cell is padding

    assert make_grid(clips, nrow=2, pad=0).shape == (3, 3 * 4, 2 * 6, 3)


def test_make_grid_holds_last_frame_of_shorter_clips():
    long, short = brightness_clip(frames=4, height=2, width=2), brightness_clip(frames=2, height=2, width=2)
    grid = make_grid([long, short], pad=0)
    assert grid.shape == (4, 2, 4, 3)
    np.testing.assert_array_equal(grid[:, :, 2:], short[[0, 1, 1, 1]])


def test_write_grid_writes_a_readable_file(tmp_path):
    clips = np.stack([gradient_clip(frames=6, height=16, width=16)] * 4)
    path = write_grid(tmp_path / "samples" / "grid.gif", clips, fps=8, min_tile=16)
    info = probe(path)
    assert (info.frames, info.width, info.height) == (6, 2 + 2 * 18, 2 + 2 * 18)
    assert read_video(path).shape == (6, 38, 38, 3)


def test_grid_previews_enlarge_small_clips_by_whole_factors(tmp_path):
    clips = np.stack([gradient_clip(frames=3, height=32, width=32)] * 4)
    path = write_grid(tmp_path / "grid.mp4", clips)  # 32 px tiles become 128 px (4x) for a person to see
    assert probe(path).width == 2 + 2 * (128 + 2)
    enlarged = read_video(write_grid(tmp_path / "grid.png", clips[:1], pad=0))  # png: lossless frames
    assert enlarged.shape == (3, 128, 128, 3)
    np.testing.assert_array_equal(enlarged[:, ::4, ::4], clips[0])
    np.testing.assert_array_equal(enlarged[:, 3::4, 3::4], clips[0])  # nearest neighbour: 4x4 blocks
    big = np.zeros((1, 2, 256, 256, 3), np.uint8)
    assert probe(write_grid(tmp_path / "big.mp4", big, pad=0)).width == 256  # never shrunk, never enlarged past need


# ----------------------------------------------------------------------------- model layout


def test_to_model_to_uint8_round_trip_is_exact():
    clips = (np.arange(2 * 4 * 8 * 8 * 3) % 256).astype(np.uint8).reshape(2, 4, 8, 8, 3)  # every value, many times
    videos = to_model(clips)
    assert videos.shape == (2, 3, 4, 8, 8) and videos.dtype == torch.float32 and videos.is_contiguous()
    assert videos.min().item() == -1.0 and videos.max().item() == 1.0
    assert videos[0, 2, 0, 0, 0].item() == pytest.approx(clips[0, 0, 0, 0, 2] / 127.5 - 1)
    np.testing.assert_array_equal(to_uint8(videos), clips)


def test_to_model_accepts_torch_and_read_only_arrays():
    clips = torch.randint(0, 256, (1, 2, 3, 3, 3), dtype=torch.uint8)
    videos = to_model(clips)
    assert isinstance(videos, torch.Tensor) and videos.shape == (1, 3, 2, 3, 3)
    np.testing.assert_array_equal(to_uint8(videos), clips.numpy())

    frozen = clips.numpy().copy()
    frozen.flags.writeable = False  # like a read-only memmap of clip shards
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(to_model(frozen), videos)

    with pytest.raises(ValueError):
        to_model(clips.float())
    with pytest.raises(ValueError):
        to_model(clips[0])


def test_to_uint8_clamps():
    videos = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5]).reshape(1, 1, 5, 1, 1)
    np.testing.assert_array_equal(to_uint8(videos).ravel(), [0, 0, 128, 255, 255])
