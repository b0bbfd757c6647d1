"""Feature networks: user weight files (TorchScript and safetensors) for I3D / Inception, and the offline EfficientNet."""

import numpy as np
import pytest
import torch

from vidgan.metrics.extractors import I3D, EffNetLite0, Inception, WeightsError, get_extractor
from vidgan.metrics.fid import InceptionV3, save_inception
from vidgan.metrics.fvd import InceptionI3d, save_i3d


def _randomise_norms(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BatchNorm statistics, so that loading them wrongly would show in the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def i3d_files(tmp_path_factory):
    torch.manual_seed(0)
    model = _randomise_norms(InceptionI3d(width=0.0625), 1)
    root = tmp_path_factory.mktemp("i3d")
    save_i3d(model, root / "i3d.safetensors")
    torch.jit.save(torch.jit.script(model), str(root / "i3d_torchscript.pt"))
    return model, root


@pytest.fixture(scope="module")
def inception_files(tmp_path_factory):
    torch.manual_seed(0)
    model = _randomise_norms(InceptionV3(width=0.125), 2)
    root = tmp_path_factory.mktemp("inception")
    save_inception(model, root / "inception.safetensors")
    torch.jit.save(torch.jit.script(model), str(root / "inception.pt"))
    return model, root


def _clips(n=2, t=4, size=16, channels=3, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, size=(n, t, size, size, channels), dtype=np.uint8))


def test_i3d_torchscript_and_safetensors_give_the_module_s_outputs(i3d_files):
    model, root = i3d_files
    clips = _clips(n=2, t=2)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        x = clips.permute(0, 4, 1, 2, 3).float()
        expected = model(x, rescale=True, resize=True, return_features=True)
    from_script = I3D(root / "i3d_torchscript.pt")(clips)["video"]
    from_safetensors = I3D(root / "i3d.safetensors")(clips)["video"]
    assert from_script.shape == (2, 400)
    torch.testing.assert_close(from_script, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(from_safetensors, expected, rtol=1e-5, atol=1e-6)
    assert I3D(root / "i3d.safetensors").describe()["weights_sha256"] != I3D(root / "i3d_torchscript.pt").describe()["weights_sha256"]


def test_inception_torchscript_and_safetensors_give_the_module_s_outputs(inception_files):
    model, root = inception_files
    clips = _clips(n=1, t=2, size=24)
    frames = clips.permute(0, 1, 4, 2, 3).reshape(2, 3, 24, 24).float()
    with torch.no_grad():
        pool, probs = model(frames, return_features=True), model(frames, no_output_bias=True)
    for name in ("inception.pt", "inception.safetensors"):
        out = Inception(root / name)(clips)
        torch.testing.assert_close(out["pool"], pool, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out["probs"], probs, rtol=1e-5, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(2))


def test_bad_weight_files_give_one_line_errors_naming_the_file(i3d_files, inception_files, tmp_path):
    _, i3d_root = i3d_files
    _, inception_root = inception_files
    missing = tmp_path / "nope.pt"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a real archive")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    # the real-size I3D's layer shapes do not fit the narrow test weights
    from safetensors.torch import load_file, save_file

    wrong = tmp_path / "wrong_width.safetensors"
    save_file(load_file(i3d_root / "i3d.safetensors"), str(wrong), metadata={"width": "1.0"})
    cases = [
        (lambda: I3D(missing), "no such weights file"),
        (lambda: I3D(corrupt), "not a loadable TorchScript file"),
        (lambda: I3D(junk), "neither a TorchScript archive nor a safetensors file"),
        (lambda: I3D(wrong), "needs"),
        (lambda: I3D(inception_root / "inception.safetensors"), "not i3d weights"),
        (lambda: Inception(None), "--inception-weights"),
    ]
    for make, words in cases:
        with pytest.raises(WeightsError) as err:
            make()
        message = str(err.value)
        assert words in message and "\n" not in message
        if "--inception-weights" not in words:
            assert str(tmp_path) in message or str(inception_root) in message
    # the wrong network's TorchScript file loads, and is caught at its first batch
    with pytest.raises(WeightsError, match="right file for i3d"):
        I3D(inception_root / "inception.pt")(_clips(n=1, t=2))
    with pytest.raises(WeightsError, match="right file for inception"):
        Inception(i3d_root / "i3d_torchscript.pt")(_clips(n=1, t=1))


def test_effnet_loads_offline_at_224():
    net = EffNetLite0()
    assert net.describe()["weights_sha256"] == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    out = net(_clips(n=1, t=2, size=32))
    assert out["frames"].shape == (1, 2, 1280) and out["video"].shape == (1, 2560)
    assert torch.isfinite(out["video"]).all() and out["video"].abs().max() > 0
    assert get_extractor("effnet-lite0", size=32) is get_extractor("effnet-lite0", size=32)  # built once per process


def test_effnet_ranks_real_below_shuffled_below_noise(mnist_data):
    from vidgan.data.clips import ClipDataset
    from vidgan.metrics.frechet import frechet_distance_rows

    net = get_extractor("effnet-lite0", size=32)  # small input: the ranking, not the protocol, is tested here
    clips = ClipDataset(mnist_data).get_batch(range(20))[0]
    real_a, real_b = clips[:10], clips[10:]
    gray = real_a[:2]  # a gray clip is the same clip in RGB
    torch.testing.assert_close(net(gray)["video"], net(gray.expand(-1, -1, -1, -1, 3).contiguous())["video"])
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([c[torch.randperm(len(c), generator=g)] for c in real_b])
    noise = torch.randint(0, 256, real_b.shape, dtype=torch.uint8, generator=g)
    features = {name: net(x)["video"].numpy() for name, x in [("a", real_a), ("b", real_b), ("shuffled", shuffled), ("noise", noise)]}
    fd = {name: frechet_distance_rows(features["a"], features[name]) for name in ("b", "shuffled", "noise")}
    assert fd["b"] < fd["shuffled"] < fd["noise"]
    assert fd["noise"] > 3 * fd["b"]
    # shuffling leaves the per-frame half of the features unchanged: the frame-order half tells them apart
    half = features["a"].shape[1] // 2
    np.testing.assert_allclose(features["shuffled"][:, :half], features["b"][:, :half], rtol=1e-4, atol=1e-4)
    assert frechet_distance_rows(features["a"][:, half:], features["shuffled"][:, half:]) > frechet_distance_rows(
        features["a"][:, half:], features["b"][:, half:]
    )


@pytest.fixture(scope="module")
def c3d_files(tmp_path_factory):
    from vidgan.metrics.c3d import C3D, save_c3d

    torch.manual_seed(0)
    model = C3D(width=0.0625).eval()
    for m in model.modules():  # variance-preserving weights, so that a narrow random network still tells clips apart
        if isinstance(m, (torch.nn.Conv3d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight)
    with torch.no_grad():
        model.fc8.weight.mul_(30.0)
    root = tmp_path_factory.mktemp("c3d")
    save_c3d(model, root / "c3d.safetensors")
    torch.jit.save(torch.jit.script(model), str(root / "c3d_ucf101.pt"))
    return model, root


def test_c3d_torchscript_and_safetensors_give_the_module_s_outputs(c3d_files):
    from vidgan.metrics.extractors import C3DExtractor

    model, root = c3d_files
    clips = _clips(n=3, t=16, size=32)
    with torch.no_grad():
        expected = model(clips.permute(0, 4, 1, 2, 3).float())
    for name in ("c3d_ucf101.pt", "c3d.safetensors"):
        out = C3DExtractor(root / name)(clips)["video"]
        assert out.shape == (3, 101)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(expected.sum(1), torch.ones(3))
    assert expected.max(1).values.min() > 2 / 101  # not the uniform distribution: the test network is informative
    with pytest.raises(ValueError, match="exactly 16 frames, got 8"):
        C3DExtractor(root / "c3d.safetensors")(_clips(n=1, t=8))
    with pytest.raises(WeightsError, match="--c3d-weights"):
        get_extractor("c3d")


def test_video_inception_score_is_one_for_a_repeated_clip_and_higher_for_varied_clips(c3d_files):
    from vidgan.metrics.evaluate import EvalOptions, compute
    from vidgan.metrics.sources import ArraySource

    _, root = c3d_files
    colours = np.random.default_rng(1).integers(0, 256, size=(20, 1, 1, 1, 3), dtype=np.uint8)
    varied = np.ascontiguousarray(np.broadcast_to(colours, (20, 20, 32, 32, 3)))  # one solid colour per clip
    repeated = np.repeat(varied[:1], 20, axis=0)
    options = EvalOptions(metrics="isv2048_16f", n=20, c3d_weights=root / "c3d.safetensors", progress=False)
    high = compute(ArraySource(varied), None, options).records
    low = compute(ArraySource(repeated), None, options).records
    assert [r["metric"] for r in high] == ["isv20_16f"] and high[0]["extractor"] == "c3d"
    assert high[0]["protocol"]["frames"] == 16 and high[0]["protocol"]["splits"] == 10 and high[0]["n_real"] is None
    assert low[0]["value"] == pytest.approx(1.0, abs=1e-6)
    assert high[0]["value"] > 1.1  # 10 splits of 2 clips: at most 2
    # a full name asks for its clip length: 128-frame FVD on these 20-frame clips is refused, naming the fix
    with pytest.raises(ValueError, match="fvd2048_128f needs clips of 128 frames but these have 20; use fvd2048_20f"):
        compute(ArraySource(varied), ArraySource(varied), EvalOptions(metrics="fvd2048_128f", progress=False))
