"""ClipDataset: the prepared clips, served by slicing memory-mapped uint8 shards."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

INDEX_NAME = "index.json"


class DatasetError(Exception):
    pass


def read_index(root: str | Path) -> dict:
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise DatasetError(f"{root}: not a prepared dataset (no {INDEX_NAME}); run `vidgan prepare SRC {root}` first")
    return json.loads(path.read_text())


class ClipDataset(Dataset):
    """Clips as uint8 (T, H, W, C) tensors with integer labels (-1 = unlabelled).

    Loading is a slice of a memory-mapped `.npy` shard: no decoding, and worker processes
    share the page cache.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = read_index(self.root)
        if not index.get("complete"):
            raise DatasetError(f"{root}: preparation did not finish; re-run the same `vidgan prepare` command to complete it")
        self.frames, self.size, self.channels = index["frames"], index["size"], index["channels"]
        self.fps = index.get("fps")
        self.classes: list[str] = index.get("classes", [])
        self.clips: list[dict] = index["clips"]
        self._shard_files = [self.root / s["file"] for s in index["shards"]]
        self._shards = self._open_shards()
        self._where = np.array([(c["shard"], c["offset"]) for c in self.clips], dtype=np.int64).reshape(-1, 2)
        self.labels = torch.tensor([c.get("label", -1) for c in self.clips], dtype=torch.long)

    def _open_shards(self) -> list[np.ndarray]:
        return [np.load(f, mmap_mode="r", allow_pickle=False) for f in self._shard_files]

    def __getstate__(self) -> dict:
        # Worker processes started by spawn (macOS, Windows) get the dataset pickled: send the file
        # names, not the memmaps (pickling a memmap copies the whole shard), and map them again there.
        return {k: v for k, v in self.__dict__.items() if k != "_shards"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._shards = self._open_shards()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        shard, offset = self._where[i]
        return torch.from_numpy(np.array(self._shards[shard][offset])), int(self.labels[i])

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, T, H, W, C) and labels (B,) for a list of clip indices."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.frames, self.size, self.size, self.channels), dtype=np.uint8)
        for j, i in enumerate(indices):
            shard, offset = self._where[i]
            out[j] = self._shards[shard][offset]
        return torch.from_numpy(out), self.labels[torch.from_numpy(indices)]


class _StepBatches(Dataset):
    """Item `step` = (clip indices, uint8 clips, labels) of this rank's slice of that step's global batch."""

    def __init__(self, data: ClipDataset, indices: Callable[[int], np.ndarray], lo: int, hi: int):
        self.data, self.indices, self.lo, self.hi = data, indices, lo, hi

    def __len__(self) -> int:
        return 2**62  # steps are open-ended (time budgets); the sampler says which ones are wanted

    def __getitem__(self, step: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        idx = np.asarray(self.indices(step))[self.lo : self.hi]
        clips, labels = self.data.get_batch(idx)
        return idx, clips, labels


class ClipLoader:
    """The batches of steps start, start + 1, ..., stop - 1, in order: uint8 clips sliced from the memmaps.

    `indices(step)` gives a step's global batch (a pure function of the step, so any step can be
    the first); each rank takes its slice [lo, hi). With workers > 0, worker processes slice ahead
    of training (pinned memory on CUDA, so the copy to the GPU overlaps compute); with 0, each batch
    is sliced when asked for (on CPU a slice costs well under 1% of a training step, and there are no
    idle cores to hide it on).
    """

    def __init__(
        self,
        data: ClipDataset,
        indices: Callable[[int], np.ndarray],
        lo: int,
        hi: int,
        start: int,
        stop: int,
        workers: int = 0,
        pin_memory: bool = False,
        prefetch: int = 2,
    ):
        self.steps = _StepBatches(data, indices, lo, hi)
        self.start, self.stop, self.workers, self.pin_memory, self.prefetch = start, stop, workers, pin_memory, prefetch

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        if self.workers == 0 and not self.pin_memory:
            return (self.steps[step] for step in range(self.start, self.stop))
        loader = DataLoader(
            self.steps,
            batch_size=None,
            sampler=range(self.start, self.stop),
            num_workers=self.workers,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch if self.workers else None,
            collate_fn=_unchanged,
        )
        return iter(loader)


def _unchanged(item):  # items are whole batches already (module level: spawned workers pickle it)
    return item


def default_loader_workers(device: torch.device, asked: int | None = None) -> int:
    """Worker processes for the clip loader: as asked, else none on CPU and up to 4 per GPU process."""
    if asked is not None:
        if asked < 0:
            raise ValueError(f"loader_workers must be >= 0, got {asked}")
        return asked
    if device.type != "cuda":
        return 0
    per_process = (os.cpu_count() or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(4, per_process - 1))
