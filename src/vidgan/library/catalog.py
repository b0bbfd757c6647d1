"""The library: a catalog (tables.py, schema.py) and a file store in one folder; opening, creating, sessions.

A library is a folder:

    LIB/library.db                     the SQLite catalog (the default), or
    LIB/library.json                   {"database": "postgresql://..."} for a catalog on a server
    LIB/store/ab/<sha256>.<ext>        clips, content-addressed by the sha256 of the file's bytes
    LIB/store/ab/<sha256>.poster.png   a poster frame, and <sha256>.preview.webp, a small animated preview
    LIB/store/assets/<sha256>.png      inputs a clip was made from (first frames), for re-generation
    LIB/store/tmp/                     files being written; never trusted

The catalog is the only source of truth: a file in the store that no row names is an orphan
(`vidgan library check LIB --repair` removes it), never a clip.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import (
    inspect,
    text,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from vidgan.library.schema import SCHEMA_VERSION, make_engine, schema_version, upgrade
from vidgan.library.tables import CONFIG_FILE, DB_FILE, STORE, Clip, LibraryError

# ----------------------------------------------------------------------------- the library


class Library:
    """A library folder and its catalog. Open with `Library.open(path)`; create with `Library.init(path)`."""

    def __init__(self, root: Path, url: str, use_fts: bool | None = None, read_only: bool | None = None):
        self.root = Path(root).resolve()
        self.url = url
        # None, or why the library cannot be written (read_only=None: look at the files' permissions)
        self.read_only = _read_only(self.root, url) if read_only is None else ("opened read-only" if read_only else None)
        self.engine = make_engine(url, read_only=self.read_only is not None)
        try:
            version = schema_version(self.engine)
        except (OperationalError, SQLAlchemyError) as err:
            raise LibraryError(f"{self.root}: cannot open its catalog ({_short(err)}); check the database URL in {CONFIG_FILE}") from err
        if version is None:
            raise LibraryError(f"{self.root}: not a vidgan library (no catalog tables); create one with `vidgan library init {self.root}`")
        if version < SCHEMA_VERSION and self.read_only:
            raise LibraryError(f"{self.root}: its catalog needs an upgrade but {self.read_only}; make it writable once and open it again")
        if version < SCHEMA_VERSION:
            upgrade(self.engine)
        elif version > SCHEMA_VERSION:
            raise LibraryError(f"{self.root}: schema version {version} is newer than this vidgan knows ({SCHEMA_VERSION}); upgrade vidgan")
        self.fts = self._has_fts() if use_fts is None else (use_fts and self._has_fts())

    # -- opening

    @staticmethod
    def url_for(root: Path) -> str:
        config = root / CONFIG_FILE
        if config.is_file():
            try:
                url = json.loads(config.read_text())["database"]
            except (ValueError, KeyError, TypeError) as err:
                raise LibraryError(f'{config}: expected JSON {{"database": "postgresql://..."}} ({err}); fix or remove it') from err
            return str(url)
        return f"sqlite:///{(root / DB_FILE).resolve()}"

    @classmethod
    def open(cls, root: str | Path, use_fts: bool | None = None, read_only: bool | None = None) -> Library:
        root = Path(root)
        if not root.is_dir() or not ((root / DB_FILE).is_file() or (root / CONFIG_FILE).is_file()):
            raise LibraryError(
                f"{root}: not a vidgan library (no {DB_FILE} or {CONFIG_FILE}); create one with `vidgan library init {root}`"
            )
        return cls(root, cls.url_for(root), use_fts=use_fts, read_only=read_only)

    @classmethod
    def init(cls, root: str | Path, url: str | None = None) -> Library:
        """Create (or open, if it exists) a library at `root`; `url`: a database server instead of LIB/library.db."""
        create_catalog(root, url)
        return cls(Path(root), cls.url_for(Path(root)))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sessions

    def session(self) -> Session:
        """A session for reading (and for short writes that cannot conflict)."""
        return Session(self.engine, expire_on_commit=False)

    def write_session(self) -> Session:
        """A session whose transaction holds SQLite's write lock from its start (see make_engine)."""
        if self.read_only:
            raise LibraryError(f"{self.root}: the library is read-only ({self.read_only}); listing and serving work, changes do not")
        return Session(self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False)

    # -- files

    def file(self, relative: str) -> Path:
        """The absolute path of a catalog path, refusing anything that is not inside the library root
        (after following symlinks). Raises LibraryError."""
        return inside_root(self.root, relative)

    @property
    def store(self) -> Path:
        return self.root / STORE

    # -- search index

    def _has_fts(self) -> bool:
        return self.engine.dialect.name == "sqlite" and inspect(self.engine).has_table("clip_search")

    def reindex(self, session: Session, clip: Clip) -> None:
        """Refresh one clip's search words (caption, condition text, tags, model, label, file name)."""
        prov = clip.provenance
        parts = [
            clip.caption,
            clip.source_name,
            prov and prov.text,
            prov and prov.model,
            prov and prov.label_name,
            *(t.tag for t in clip.tags),
        ]
        clip.search_text = " ".join(p for p in parts if p).lower()
        if self.fts:
            session.flush()
            session.execute(text("DELETE FROM clip_search WHERE rowid = :id"), {"id": clip.id})
            session.execute(text("INSERT INTO clip_search(rowid, text) VALUES (:id, :text)"), {"id": clip.id, "text": clip.search_text})

    def unindex(self, session: Session, clip_ids: list[int]) -> None:
        if self.fts and clip_ids:
            for chunk in _chunks(clip_ids, 500):
                session.execute(text(f"DELETE FROM clip_search WHERE rowid IN ({','.join(str(int(i)) for i in chunk)})"))

    def rebuild_search_index(self, session: Session) -> None:
        if self.fts:
            session.execute(text("DELETE FROM clip_search"))
            session.execute(text("INSERT INTO clip_search(rowid, text) SELECT id, search_text FROM clips"))


def create_catalog(root: str | Path, url: str | None = None, target: int = SCHEMA_VERSION) -> None:
    """Make the library folder and its catalog at schema version `target` (tests make old versions)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise LibraryError(f"{root}: exists and is not a folder; choose another path")
    if url is not None and (root / DB_FILE).is_file():
        raise LibraryError(f"{root}: already has an SQLite catalog ({DB_FILE}); use another folder for a server catalog")
    if url is not None and (root / CONFIG_FILE).is_file() and Library.url_for(root) != url:
        raise LibraryError(f"{root / CONFIG_FILE}: already points at another database; use another folder")
    (root / STORE / "tmp").mkdir(parents=True, exist_ok=True)
    (root / STORE / "assets").mkdir(exist_ok=True)
    if url is not None:
        (root / CONFIG_FILE).write_text(json.dumps({"database": url}, indent=1) + "\n")
    engine = make_engine(url or Library.url_for(root))
    try:
        upgrade(engine, target)
    except (OperationalError, SQLAlchemyError) as err:
        raise LibraryError(f"{root}: cannot create the catalog ({_short(err)}); check the database URL") from err
    finally:
        engine.dispose()


def _read_only(root: Path, url: str) -> str | None:
    """Why an SQLite library cannot be written (its folder or catalog file is read-only), or None."""
    import os

    if not url.startswith("sqlite:///"):
        return None
    db = root / DB_FILE
    if not os.access(db, os.W_OK):
        return f"{db} is not writable"
    if not os.access(root, os.W_OK):  # SQLite needs to create its journal files beside the catalog
        return f"the folder {root} is not writable"
    return None


def inside_root(root: Path, relative: str) -> Path:
    """root / relative, resolved (symlinks followed), only if it stays inside root."""
    if (
        not isinstance(relative, str)
        or not relative
        or "\x00" in relative
        or relative.startswith(("/", "\\"))
        or ".." in Path(relative).parts
    ):
        raise LibraryError(f"{relative!r}: not a path inside the library")
    root = Path(root).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise LibraryError(f"{relative!r}: leads outside the library")
    return target


def _short(err: Exception) -> str:
    return str(getattr(err, "orig", None) or err).strip().splitlines()[0][:200]


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
