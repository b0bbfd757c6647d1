"""The training data path: step-ordered batches from memmaps, worker processes, parallel prepare."""

import json
import pickle

import numpy as np
import pytest
import torch
from test_prepare import video_folder  # noqa: F401  (fixture)

from vidgan.data.clips import ClipDataset, ClipLoader, default_loader_workers
from vidgan.data.prepare import PrepareSettings, prepare
from vidgan.training.common import BatchOrder


def _expected(data, order, lo, hi, steps):
    out = []
    for step in steps:
        idx = order.indices(step)[lo:hi]
        out.append((idx, *data.get_batch(idx)))
    return out


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_serves_the_steps_in_order_from_any_start(mnist_data, workers):
    data = ClipDataset(mnist_data)
    order = BatchOrder(len(data), 8, seed=5)
    lo, hi = 4, 8  # rank 1 of 2
    got = list(ClipLoader(data, order.indices, lo, hi, start=7, stop=12, workers=workers))
    want = _expected(data, order, lo, hi, range(7, 12))
    assert len(got) == 5
    for (gi, gc, gl), (wi, wc, wl) in zip(got, want):
        assert np.array_equal(np.asarray(gi), wi)
        assert gc.dtype == torch.uint8 and torch.equal(gc, wc) and torch.equal(gl, wl)


def test_dataset_pickles_as_file_names_not_pixels(mnist_data):
    data = ClipDataset(mnist_data)
    blob = pickle.dumps(data)
    assert len(blob) < 64 * 8 * 32 * 32 // 4  # far less than the shard's pixels
    again = pickle.loads(blob)
    assert torch.equal(again.get_batch([3, 1])[0], data.get_batch([3, 1])[0])


def test_default_loader_workers():
    assert default_loader_workers(torch.device("cpu")) == 0
    assert default_loader_workers(torch.device("cpu"), 3) == 3
    assert 1 <= default_loader_workers(torch.device("cuda")) <= 4
    with pytest.raises(ValueError, match="loader_workers"):
        default_loader_workers(torch.device("cpu"), -1)


def test_parallel_prepare_writes_the_same_dataset(video_folder, tmp_path):  # noqa: F811
    settings = PrepareSettings(size=16, frames=4, stride=3)
    outs = {}
    for workers in (1, 3):
        outs[workers] = tmp_path / f"w{workers}"
        prepare(str(video_folder), outs[workers], settings, workers=workers, progress=False, log=lambda s: None)
    a, b = ClipDataset(outs[1]), ClipDataset(outs[3])
    assert a.clips == b.clips and len(a) > 10
    assert torch.equal(a.get_batch(range(len(a)))[0], b.get_batch(range(len(b)))[0])
    assert json.loads((outs[1] / "skipped.json").read_text()) == json.loads((outs[3] / "skipped.json").read_text())
    assert (outs[1] / "index.json").read_text() == (outs[3] / "index.json").read_text()
