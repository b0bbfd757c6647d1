"""Will a preparation fit? Memory and disk estimates for `vidgan prepare`, refused before any work."""

from __future__ import annotations

import os
from pathlib import Path


def available_memory() -> int | None:
    """Bytes of memory the system can still give (MemAvailable), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _free_disk(out: Path) -> int | None:
    import shutil

    probe = out.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def check_fits(out: Path, frames: int, size: int, channels: int, clips: int | None, shard_bytes: int) -> str | None:
    """Why a preparation would not fit on this machine (its working memory, or its output when the clip
    count is known), with the numbers, or None. prepare() raises it as a PrepareError unless check=False."""
    clip_bytes = frames * size**2 * channels
    memory = clip_bytes * 12 + min(shard_bytes, clip_bytes * max(clips or 1, 1))  # decode/resize buffers + one shard
    free_memory = available_memory()
    gib = 2**30
    if free_memory is not None and memory > free_memory:
        return (
            f"{out}: clips of {frames}x{size}x{size} need about {memory / gib:.1f} GiB of memory to prepare, "
            f"{free_memory / gib:.1f} GiB is available; use a smaller --size or --frames (or --no-check to try anyway)"
        )
    free_disk = _free_disk(out)
    if clips is not None and free_disk is not None and clip_bytes * clips > free_disk:
        return (
            f"{out}: {clips} clips of {frames}x{size}x{size} take {clip_bytes * clips / gib:.1f} GiB, "
            f"{free_disk / gib:.1f} GiB is free there; use a smaller --n, --size or --frames (or --no-check to try anyway)"
        )
    return None
