"""One way for every command to report a bad input: one line naming the file and the fix, exit 1.

Every vidgan exception meant for a user is listed here. `known_errors()` returns those whose module
is already imported: an exception of a module the command never imported cannot have been raised,
and importing it only to catch it would load torch (seconds) for commands that never need it
(`vidgan library ls`).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import NoReturn

import typer

USER_ERRORS = [
    ("vidgan.data.video_io", "VideoError"),
    ("vidgan.data.sources", "PrepareError"),
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


def one_line(message: object) -> str:
    return " ".join(str(message).split("\n")).strip()


def fail(message: object) -> NoReturn:
    """Report `message` (or an exception) as one line on stderr and exit 1; with --debug an exception is re-raised."""
    if isinstance(message, BaseException):
        if debugging():
            raise message
        message = describe(message)
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(1)


def debugging() -> bool:
    return os.environ.get("VIDGAN_DEBUG", "") not in ("", "0")


# What to do about an operating-system error, by errno: the path and this go on one line.
_OS_FIXES = {
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "is a folder where a file is needed; pass a file",
    errno.EACCES: "permission denied; choose a location you can write to (or read), or fix its permissions",
    errno.EPERM: "operation not permitted; choose another location or fix its permissions",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.ENOSPC: "no space left on the device; free some space and run the same command again (finished work is kept)",
    errno.EDQUOT: "disk quota exceeded; free some space and run the same command again (finished work is kept)",
    errno.EEXIST: "already exists; remove it or choose another path",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop); fix or remove the link",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and run again",
    errno.ENOMEM: "out of memory; use a smaller batch, size or --n",
}


def describe_os_error(err: OSError) -> str:
    """One line: the path(s), what happened and what to do."""
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    fix = _OS_FIXES.get(err.errno or -1) or (err.strerror or str(err)).lower()
    return f"{where}: {fix}" if where else f"{err.strerror or err}: {fix}" if err.strerror else fix


def describe(err: BaseException) -> str:
    """The one-line message for an exception that reached the command line."""
    if isinstance(err, known_errors()) and not isinstance(err, OSError):
        return one_line(err)
    if isinstance(err, OSError):
        if err.errno is None and err.args:  # raised by vidgan with a full message (FileNotFoundError("x: ..."))
            return one_line(err.args[0])
        return describe_os_error(err)
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller batch, size or --n"
    return f"internal error ({type(err).__name__}: {one_line(err)}); rerun with --debug for the traceback and please report it"
