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
        if Path(root).is_file():
            raise DatasetError(f"{root}: is a file; pass the folder made by `vidgan prepare SRC OUT`")
        raise DatasetError(f"{root}: not a prepared dataset (no {INDEX_NAME}); run `vidgan prepare SRC {root}` first")
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: damaged ({err}); prepare the dataset again (`vidgan prepare SRC {root} --force`)") from None
    except PermissionError:
        raise DatasetError(f"{path}: permission denied; make the dataset readable (chmod -R u+r {root})") from None
    if not isinstance(index, dict):
        raise DatasetError(f"{path}: not a dataset index; prepare the dataset again (`vidgan prepare SRC {root} --force`)")
    return index


def _damaged(root: Path, what: str) -> DatasetError:
    return DatasetError(f"{root / INDEX_NAME}: {what}; prepare the dataset again (`vidgan prepare SRC {root} --force`)")


def _shard_path(root: Path, entry: object) -> Path:
    """A shard's file, which must be a plain relative name inside the dataset folder."""
    name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise _damaged(root, f"shard path {name!r} is not a file inside the dataset folder")
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise _damaged(root, f"shard path {name!r} leads outside the dataset folder")
    return path


def _check_clips(root: Path, clips: object, shard_lengths: list[int], num_classes: int) -> np.ndarray:
    """(N, 3) int64 array of (shard, offset, label) after checking every entry is in range."""
    if not isinstance(clips, list) or not clips:
        raise _damaged(root, "it lists no clips")
    try:
        table = np.array([(c["shard"], c["offset"], c.get("label", -1)) for c in clips], dtype=np.int64)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise _damaged(root, "a clip entry lacks an integer shard or offset") from None
    shard, offset, label = table.T
    bad = np.flatnonzero((shard < 0) | (shard >= len(shard_lengths)))
    if len(bad):
        raise _damaged(root, f"clip {bad[0]} names shard {shard[bad[0]]}, there are {len(shard_lengths)}")
    bad = np.flatnonzero((offset < 0) | (offset >= np.asarray(shard_lengths, dtype=np.int64)[shard]))
    if len(bad):
        raise _damaged(root, f"clip {bad[0]} has offset {offset[bad[0]]}, outside its shard of {shard_lengths[shard[bad[0]]]} clips")
    bad = np.flatnonzero((label < -1) | (label >= max(num_classes, 0)) & (label != -1))
    if len(bad):
        raise _damaged(root, f"clip {bad[0]} has label {label[bad[0]]}, but the dataset has {num_classes} classes")
    return table


class ClipDataset(Dataset):
    """Clips as uint8 (T, H, W, C) tensors with integer labels (-1 = unlabelled).

    Loading is a slice of a memory-mapped `.npy` shard: no decoding, and worker processes
    share the page cache.
    """

    def __init__(self, root: str | Path):
        self.root = root = Path(root)
        index = read_index(root)
        if not index.get("complete"):
            raise DatasetError(f"{root}: preparation did not finish; re-run the same `vidgan prepare` command to complete it")
        shape = [index.get(k) for k in ("frames", "size", "channels")]
        if not all(isinstance(v, int) and 0 < v <= 1 << 16 for v in shape):
            raise _damaged(root, f"frames/size/channels are {shape}, not positive integers")
        self.frames, self.size, self.channels = shape
        self.fps = index.get("fps")
        self.classes: list[str] = index.get("classes", [])
        if not isinstance(self.classes, list) or not isinstance(index.get("shards"), list):
            raise _damaged(root, "classes or shards is not a list")
        self.clips: list[dict] = index.get("clips")
        self._shard_files = [_shard_path(root, s) for s in index["shards"]]
        self._shards = self._open_shards()
        table = _check_clips(root, self.clips, [len(s) for s in self._shards], len(self.classes))
        self._where = table[:, :2].copy()
        self.labels = torch.from_numpy(table[:, 2].copy())

    def _open_shards(self) -> list[np.ndarray]:
        shards = []
        for f in self._shard_files:
            try:
                shard = np.load(f, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise DatasetError(f"{f}: missing; prepare the dataset again (`vidgan prepare SRC {self.root} --force`)") from None
            except PermissionError:
                raise DatasetError(f"{f}: permission denied; make the dataset readable (chmod -R u+r {self.root})") from None
            except (ValueError, OSError, EOFError) as err:
                why = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise DatasetError(
                    f"{f}: damaged or truncated ({why}); prepare the dataset again (`vidgan prepare SRC {self.root} --force`)"
                ) from None
            want = (self.frames, self.size, self.size, self.channels)
            if shard.dtype != np.uint8 or shard.ndim != 5 or tuple(shard.shape[1:]) != want:
                raise DatasetError(
                    f"{f}: holds {shard.dtype} {tuple(shard.shape)}, index.json says uint8 (N, {', '.join(map(str, want))}); "
                    f"prepare the dataset again (`vidgan prepare SRC {self.root} --force`)"
                )
            shards.append(shard)
        return shards

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
