"""Metric names, precision/recall, diversity alarms, the real-statistics cache, and feature gathering across processes."""

import socket

import numpy as np
import pytest
import torch

from vidgan.metrics import evaluate as ev
from vidgan.metrics import extraction
from vidgan.metrics.diversity import feature_diversity
from vidgan.metrics.evaluate import EvalOptions, compute
from vidgan.metrics.precision_recall import prdc
from vidgan.metrics.registry import parse_metric, parse_metrics
from vidgan.metrics.sources import ArraySource, DatasetSource


def test_metric_names_carry_the_protocol():
    assert parse_metric("fd_effnet2048_16f").name == "fd_effnet2048_16f"
    assert parse_metric("fid50k").n == 50_000 and parse_metric("fid50k").name == "fid50k"
    assert parse_metric("fid50k", n=1000).name == "fid1k"
    assert parse_metric("fvd2048_128f").frames == 128
    spec = parse_metric("fd_effnet2048_16f", n=64)
    assert (spec.name, spec.requested) == ("fd_effnet64_16f", "fd_effnet2048_16f")
    assert parse_metric("kd_effnet2048_16f", effnet_size=112).name == "kd_effnet2048_16f_112px"
    assert parse_metric("fvd2048_16f", effnet_size=112).name == "fvd2048_16f"  # i3d has its own fixed input
    # bare names shrink to short clips, full names refuse them
    assert parse_metric("pr", n=32).fit_frames(8).name == "pr32_8f"
    assert parse_metric("is").name == "is2048"
    with pytest.raises(ValueError, match="needs clips of 16 frames but these have 8; use fvd2048_8f"):
        parse_metric("fvd2048_16f").fit_frames(8)
    with pytest.raises(ValueError, match="unknown metric 'fvd'|unknown metric 'bogus'"):
        parse_metrics("fd_effnet,bogus")
    groups = {s.group for s in parse_metrics("fd_effnet2048_16f,kd_effnet2048_16f,pr,diversity")}
    assert len(groups) == 1  # one feature pass serves all four


def test_precision_recall_identical_and_disjoint_sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    same = prdc(x, x.copy(), k=5)
    assert same.precision == 1.0 and same.recall == 1.0 and same.coverage == 1.0
    assert same.density >= 1.0
    apart = prdc(x, x + 100.0, k=5)
    assert apart.as_dict() == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    half = prdc(x, np.concatenate([x[:20], x[:20] + 100.0]), k=5)
    assert 0.4 < half.precision < 0.6


def test_feature_diversity_alarm():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(30, 6))
    assert feature_diversity(rng.normal(size=(30, 6)), real).alarm is None
    collapsed = feature_diversity(np.repeat(real[:1], 30, axis=0), real)
    assert collapsed.ratio < 1e-6 and collapsed.near_duplicates == 1.0  # 0 up to the rounding of cdist's matrix products
    assert "mode collapse" in collapsed.alarm


def test_one_repeated_real_clip_gets_high_precision_low_recall_and_an_alarm(mnist_data):
    from vidgan.data.clips import ClipDataset

    real = ClipDataset(mnist_data).get_batch(range(8))[0].numpy()
    fake = np.repeat(real[3:4], 8, axis=0)  # a "generator" that memorised one training clip
    options = EvalOptions(metrics="pr,diversity", n=8, effnet_size=32, progress=False)
    records = {r["metric"]: r for r in compute(ArraySource(fake), ArraySource(real), options).records}
    assert records["pr8_8f_32px_precision"]["value"] == 1.0
    assert records["pr8_8f_32px_recall"]["value"] <= 1 / 8 + 1e-9
    assert records["diversity8_8f_32px"]["value"] < 0.01
    assert records["diversity8_8f_32px_near_duplicates"]["value"] == 1.0
    assert "mode collapse" in records["diversity8_8f_32px"]["alarm"]
    assert records["pr8_8f_32px_precision"]["protocol"]["k"] == 5
    assert records["pr8_8f_32px_precision"]["n"] == 8 and records["pr8_8f_32px_precision"]["n_real"] == 8


def test_real_statistics_are_cached_and_keyed_by_dataset_and_protocol(mnist_data, tmp_path, monkeypatch):
    from vidgan.data.prepare import PrepareSettings, prepare

    calls = []
    real_extract = extraction.extract
    counting = lambda *a, **k: calls.append(a[0].kind) or real_extract(*a, **k)  # noqa: E731
    monkeypatch.setattr(ev, "extract", counting)  # the generated side
    monkeypatch.setattr(extraction, "extract", counting)  # the real side (real_features)
    fake = ArraySource(np.random.default_rng(0).integers(0, 256, size=(4, 8, 32, 32, 1), dtype=np.uint8))
    options = EvalOptions(metrics="fd_effnet", n=4, effnet_size=32, progress=False, cache_dir=tmp_path / "cache")

    first = compute(fake, DatasetSource(mnist_data), options).records[0]
    second = compute(fake, DatasetSource(mnist_data), options).records[0]
    assert calls == ["arrays", "dataset", "arrays"]  # the real pass ran once
    assert first["protocol"]["real_cache"]["hit"] is False and second["protocol"]["real_cache"]["hit"] is True
    assert second["value"] == pytest.approx(first["value"], rel=1e-9)
    assert len(list((tmp_path / "cache").glob("effnet-lite0-*.npz"))) == 1

    calls.clear()
    compute(fake, DatasetSource(mnist_data), EvalOptions(**{**options.__dict__, "n": 3}))  # other protocol: new key
    other = tmp_path / "other"
    prepare("builtin:moving-mnist", other, PrepareSettings(size=32, frames=8), n=8, seed=3, progress=False, log=lambda s: None)
    compute(fake, DatasetSource(other), options)  # other dataset: new key
    assert calls == ["arrays", "dataset", "arrays", "dataset"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    compute(fake, DatasetSource(mnist_data), EvalOptions(**{**options.__dict__, "cache": False}))
    assert calls[-1] == "dataset"  # --no-cache recomputes


class _PixelMeans:
    """A stand-in feature network: the mean of each frame (cheap, and different for every clip)."""

    name = "pixel-means"

    def __call__(self, clips, outputs):
        return {"video": clips.float().mean(dim=(2, 3, 4))}


def _gather_worker(rank, world, port, clips, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    source = ArraySource(clips)
    refs = source.plan(7, 4, seed=0)
    stats = extraction.extract(source, refs, 4, _PixelMeans(), ("video",), 8, keep=True, progress=False, rank=rank, world=world)
    queue.put((rank, stats["video"].features))
    dist.destroy_process_group()


@pytest.mark.slow  # starts two processes
def test_features_gathered_across_processes_equal_one_process():
    clips = np.random.default_rng(2).integers(0, 256, size=(9, 6, 8, 8, 1), dtype=np.uint8)
    source = ArraySource(clips)
    refs = source.plan(7, 4, seed=0)
    single = extraction.extract(source, refs, 4, _PixelMeans(), ("video",), 8, keep=True, progress=False)["video"].features
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_gather_worker, args=(r, 2, port, clips, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    for rank in (0, 1):  # 7 clips split 4 + 3, gathered back in item order on every rank
        np.testing.assert_array_equal(results[rank], single)
