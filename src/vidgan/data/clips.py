"""ClipDataset: the prepared clips, served by slicing memory-mapped uint8 shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

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
        self._shards = [np.load(self.root / s["file"], mmap_mode="r", allow_pickle=False) for s in index["shards"]]
        self._where = np.array([(c["shard"], c["offset"]) for c in self.clips], dtype=np.int64).reshape(-1, 2)
        self.labels = torch.tensor([c.get("label", -1) for c in self.clips], dtype=torch.long)

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
