"""One way for every command to report a bad input: one line naming the file and the fix, exit 1.

Every vidgan exception meant for a user is listed here. `known_errors()` returns those whose module
is already imported: an exception of a module the command never imported cannot have been raised,
and importing it only to catch it would load torch (seconds) for commands that never need it
(`vidgan library ls`).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

USER_ERRORS = [
    ("vidgan.data.video_io", "VideoError"),
    ("vidgan.data.prepare", "PrepareError"),
    ("vidgan.data.clips", "DatasetError"),
    ("vidgan.data.builtin", "BuiltinDataError"),
    ("vidgan.run", "RunDirError"),
    ("vidgan.run", "CheckpointError"),
    ("vidgan.training.common", "NonFiniteLossError"),
    ("vidgan.text", "TextModelError"),
    ("vidgan.library.tables", "LibraryError"),
    ("vidgan.metrics.extractors", "WeightsError"),
]


def known_errors() -> tuple[type[Exception], ...]:
    loaded = [getattr(sys.modules.get(module), name, None) for module, name in USER_ERRORS]
    return (*(e for e in loaded if e is not None), ValueError, FileNotFoundError)


def fail(message: object) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
