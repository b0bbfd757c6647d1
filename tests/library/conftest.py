"""Fixtures for the library tests: real Moving MNIST clips as files, a tiny class-conditional run,
and a throwaway PostgreSQL server (Debian's binaries) for the catalog tests."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from vidgan.data.clips import ClipDataset
from vidgan.data.video_write import write_video
from vidgan.presets import load_config


def _postgres_bin() -> Path:
    """VIDGAN_PG_BIN, else the newest Debian server (/usr/lib/postgresql/N/bin), else initdb on PATH."""
    if os.environ.get("VIDGAN_PG_BIN"):
        return Path(os.environ["VIDGAN_PG_BIN"])
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _postgres_bin()


@pytest.fixture(scope="session")
def mnist_clips(mnist_data) -> np.ndarray:
    """16 real Moving MNIST clips, uint8 (16, 8, 32, 32, 1)."""
    return ClipDataset(mnist_data).get_batch(range(16))[0].numpy()


@pytest.fixture(scope="session")
def clip_files(mnist_clips, tmp_path_factory) -> list[Path]:
    """Eight different Moving MNIST clips as mp4 files."""
    folder = tmp_path_factory.mktemp("clips")
    return [write_video(folder / f"sample_{i}.mp4", mnist_clips[i], fps=10) for i in range(8)]


@pytest.fixture(scope="session")
def class_run(mnist_data, tmp_path_factory) -> Path:
    """A tiny class-conditional VideoGAN on Moving MNIST (labels: the first digit), 2 steps."""
    from vidgan.training.loop import train

    run = tmp_path_factory.mktemp("run") / "run"
    cfg = load_config(
        "tiny",
        {
            "data": str(mnist_data),
            "train.steps": 2,
            "train.batch_size": 2,
            "train.checkpoint_every": 2,
            "train.sample_every": 1000,
            "model.condition": "class",
        },
    )
    train(cfg, run, progress=False, log=lambda s: None)
    return run


# ----------------------------------------------------------------------------- PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_unavailable() -> str | None:
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql, or set VIDGAN_PG_BIN)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (v3) is not installed: pip install 'psycopg[binary]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' user to run the server as (PostgreSQL refuses root)"
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster in a temporary folder on a free local port (trust auth, no fsync), for this session."""
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="vidgan-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = folder / "data"
    try:
        subprocess.run(
            [*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "vidgan", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        log = (folder / "log").read_text()[-1000:] if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {err}\n{getattr(err, 'stderr', b'')!r}\n{log}")
    try:
        yield f"postgresql://vidgan@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"lib_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", "sqlite-like", "postgresql"])
def library_factory(request, tmp_path):
    """Make a library on each catalog backend: SQLite with FTS5 search, SQLite with LIKE search, PostgreSQL."""
    from vidgan.library.catalog import Library

    made = []

    def make(name: str = "lib"):
        root = tmp_path / name
        if request.param == "postgresql":
            url = request.getfixturevalue("postgres_url")
            Library.init(root, url).close()
        else:
            Library.init(root).close()
        lib = Library.open(root, use_fts=False if request.param == "sqlite-like" else None)
        made.append(lib)
        return lib

    make.backend = request.param
    yield make
    for lib in made:
        lib.close()


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_lib(request, tmp_path):
    """An empty library on SQLite, then on PostgreSQL (skipped where no server can be started)."""
    from vidgan.library.catalog import Library

    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with Library.init(tmp_path / "lib", url) as lib:
        yield lib
