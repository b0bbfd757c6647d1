"""What a folder of videos holds: its video files and frame folders, their labels and captions.

- videos: every video file (VIDEO_SUFFIXES) and every sub-folder of images (one video per folder),
  found recursively in sorted order; hidden names are left out, unreadable ones are reported;
- label: the first sub-folder under the root (`cats/a.mp4` is a `cats` clip), for class conditioning;
- caption: `captions.json` at the root ({"cats/a.mp4": "a cat jumps"}), else the first line of a
  sidecar text file (`a.txt` beside `a.mp4`), for text conditioning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vidgan.data.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES


class PrepareError(Exception):
    """A folder (or its captions) cannot be prepared: one line naming the file and the fix."""


def scan_sources(src: Path) -> tuple[list[Path], list[dict]]:
    """Video files and frame folders under src (recursive, sorted) and the unreadable names found."""
    found, bad = [], []

    def unreadable(err: OSError) -> None:  # a sub-folder os.walk cannot list: reported, not silently left out
        bad.append(
            {"path": str(err.filename), "reason": f"cannot list the folder ({(err.strerror or str(err)).lower()}); fix its permissions"}
        )

    for dirpath, dirnames, filenames in os.walk(src, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        names = sorted(f for f in filenames if not f.startswith("."))
        for name in names:
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                found.append(here / name)
        if here != src and any(Path(n).suffix.lower() in IMAGE_SUFFIXES for n in names):
            found.append(here)  # a folder of frames is one video
    good = []
    for path in found:
        try:
            str(path).encode("utf-8")
            good.append(path)
        except UnicodeEncodeError:
            printable = str(path).encode("utf-8", "backslashreplace").decode()
            bad.append({"path": printable, "reason": "file name is not valid UTF-8; rename the file"})
    return good, bad


def label_of(path: Path, src: Path) -> str | None:
    rel = path.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else None


def read_captions(src: Path) -> dict[str, str]:
    """captions.json at the folder root: {"relative/path.mp4": "a sentence", ...} (optional)."""
    path = src / "captions.json"
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PrepareError(f"{path}: not valid JSON ({err}); fix it or remove it") from err
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise PrepareError(f'{path}: must map video paths to sentences, like {{"cats/a.mp4": "a cat jumps"}}')
    return table


def caption_of(path: Path, rel: str, table: dict[str, str]) -> str | None:
    """The clip's caption: captions.json first, else a sidecar text file (VIDEO.txt beside VIDEO.mp4)."""
    if rel in table:
        return table[rel]
    sidecar = path.with_suffix(".txt") if path.is_file() else path.parent / f"{path.name}.txt"
    lines = sidecar.read_text(errors="replace").strip().splitlines() if sidecar.is_file() else []
    return lines[0].strip() if lines else None
