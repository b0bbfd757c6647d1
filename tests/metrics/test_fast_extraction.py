"""The fast feature path computes the same scores as the PyTorch fp32 reference; a path that moves
scores (bf16) is a protocol with its own name; training-time scoring reuses cached real statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.helpers import tiny_config

from vidgan.data.clips import ClipDataset
from vidgan.metrics.evaluate import EvalOptions, compute
from vidgan.metrics.extractors import EffNetLite0
from vidgan.metrics.frechet import frechet_distance_rows
from vidgan.metrics.runtime import onnx_available
from vidgan.metrics.sources import ArraySource, DatasetSource

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="the fast path needs onnx + onnxruntime: pip install 'vidgan[fast]'")


@pytest.fixture(scope="module")
def fixed_set(mnist_data):
    """24 real Moving MNIST clips (8x32x32) and 24 with their frames shuffled: a small fixed set."""
    clips = ClipDataset(mnist_data).get_batch(range(48))[0]
    shuffled = clips[24:, torch.randperm(clips.shape[1], generator=torch.Generator().manual_seed(0))]
    return clips[:24], shuffled


@needs_onnx
def test_fast_path_gives_the_reference_score(fixed_set, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGAN_CACHE_DIR", str(tmp_path))
    a, b = fixed_set
    ref = EffNetLite0(size=96, runtime="torch")
    fast = EffNetLite0(size=96, runtime="onnxruntime")
    assert ref.runtime == "torch" and fast.runtime == "onnxruntime"
    assert fast.describe()["runtime"].startswith("onnxruntime") and fast.ident == ref.ident  # one cache for both
    rows = {name: (net(a)["video"].numpy(), net(b)["video"].numpy()) for name, net in (("ref", ref), ("fast", fast))}
    assert np.abs(rows["fast"][0] - rows["ref"][0]).max() <= 1e-3 * np.abs(rows["ref"][0]).max()
    fd_ref, fd_fast = (frechet_distance_rows(*rows[k]) for k in ("ref", "fast"))
    assert fd_ref > 0
    assert abs(fd_fast - fd_ref) <= 0.005 * fd_ref, (fd_fast, fd_ref)
    assert list(tmp_path.glob("onnx/effnet-lite0-*-96px-*.onnx"))  # exported once, reused by the next process


def test_auto_runtime_is_fp32_cpu_only(monkeypatch):
    from vidgan.metrics.runtime import choose_runtime

    cpu = torch.device("cpu")
    assert choose_runtime("auto", cpu, "bf16") == "torch"
    assert choose_runtime("torch", cpu, "fp32") == "torch"
    assert choose_runtime("auto", cpu, "fp32") == ("onnxruntime" if onnx_available() else "torch")
    monkeypatch.setenv("VIDGAN_RUNTIME", "torch")
    assert choose_runtime("auto", cpu, "fp32") == "torch"
    with pytest.raises(ValueError, match="runtime must be"):
        choose_runtime("tensorrt", cpu, "fp32")


def test_bf16_is_a_protocol_with_its_own_name(fixed_set, tmp_path):
    a, b = fixed_set
    names = {}
    for precision in ("fp32", "bf16"):
        options = EvalOptions(metrics="fd_effnet16_8f", effnet_size=64, precision=precision, progress=False, cache_dir=tmp_path)
        records = compute(ArraySource(a[:16].numpy()), ArraySource(b[:16].numpy()), options).records
        names[precision] = records[0]["metric"]
        assert records[0]["protocol"]["extractor"]["precision"] == precision
    assert names == {"fp32": "fd_effnet16_8f_64px", "bf16": "fd_effnet16_8f_64px_bf16"}


def test_training_time_scoring_reuses_the_real_statistics(mnist16, tmp_path, monkeypatch):
    """The second evaluation during a run extracts no real clips (cached), and the cost is reported."""
    from vidgan.metrics import extraction
    from vidgan.training.loop import train

    monkeypatch.setenv("VIDGAN_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    original = extraction.extract

    def counting(source, *args, **kwargs):
        calls.append(type(source).__name__)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(extraction, "extract", counting)
    monkeypatch.setattr("vidgan.metrics.evaluate.extract", counting)
    lines = []
    cfg = tiny_config(mnist16, **{"train.steps": 4, "train.eval_every": 2, "train.eval_n": 8, "train.eval_image_size": 32})
    train(cfg, tmp_path / "run", progress=False, log=lines.append)
    assert calls.count("DatasetSource") == 1 and calls.count("GeneratorSource") == 2, calls
    records = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert records[1]["protocol"]["real_cache"]["hit"] is True
    assert any("scoring is" in ln and "of the run's time" in ln for ln in lines), lines


def test_dataset_scores_do_not_depend_on_the_loader_thread(mnist16, tmp_path):
    """Loading the next batch in a second thread changes nothing: same rows in the same order."""
    from vidgan.metrics.extraction import extract

    net = EffNetLite0(size=32, runtime="torch")
    source = DatasetSource(mnist16)
    refs = source.plan(10, 8, 0)
    one = extract(source, refs, 8, net, ("video",), 16, True, batch_size=3, progress=False)["video"]
    per_clip = np.concatenate([net(torch.from_numpy(source.load(refs[i : i + 1], 8, 16)))["video"].numpy() for i in range(10)])
    assert np.allclose(one.features, per_clip, rtol=1e-4, atol=1e-4)


@needs_onnx
def test_export_leaves_the_network_in_eval_mode(tmp_path):
    """The exporter restores the mode it found: a wrapper in training mode would switch the wrapped
    network's BatchNorm to batch statistics for every later PyTorch call."""
    from vidgan.metrics.runtime import OnnxNetwork

    class Wrapper(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x).mean(dim=(2, 3))

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    net[1].running_mean.fill_(0.5)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        before = net(x)
    fast = OnnxNetwork(Wrapper(net), x[:1], "probe", folder=tmp_path)
    assert not net.training
    with torch.no_grad():
        torch.testing.assert_close(net(x), before)
        torch.testing.assert_close(fast(x), before.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


def test_frame_features_leave_their_input_alone_and_match_the_antialiased_resize(fixed_set):
    """Enlarging takes the plain bilinear kernel and normalises in place on its own copy: the features
    equal those of the antialiased resize to float rounding, and the caller's frames are untouched."""
    import torch.nn.functional as F

    net = EffNetLite0(size=96, runtime="torch", frame_batch=8)
    frames = fixed_set[0][:2].permute(0, 1, 4, 2, 3).flatten(0, 1).float().expand(-1, 3, -1, -1).contiguous()  # 16 frames 32 px
    before = frames.clone()
    got = net.frame_features(frames)
    assert torch.equal(frames, before)
    x = (F.interpolate(frames, size=(96, 96), mode="bilinear", align_corners=False, antialias=True) - 127.0) / 128.0
    want = net.net.extract_features(x.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3))
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    same = EffNetLite0(size=32, runtime="torch", frame_batch=8)  # no resize: normalised out of place
    same.frame_features(frames)
    assert torch.equal(frames, before)
