"""The library catalog: SQLAlchemy 2 tables, schema versions, and the queries everything else uses.

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
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

DB_FILE = "library.db"
CONFIG_FILE = "library.json"
STORE = "store"
# Ids are 64-bit; anything outside this range is not an id (the web API answers 400, not a crash).
MAX_ID = 2**63 - 1
# SQLite uses INTEGER PRIMARY KEY (its rowid, 64-bit); a server gets BIGINT.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class LibraryError(Exception):
    """One line that names the library (or clip) and says what to do."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ----------------------------------------------------------------------------- tables


class Base(DeclarativeBase):
    pass


class Clip(Base):
    __tablename__ = "clips"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the file's bytes: its name in the store
    frames_sha256: Mapped[str] = mapped_column(String(64))  # of the decoded uint8 RGB frames (frames_hash)
    path: Mapped[str] = mapped_column(String(300))  # relative to the library root, posix
    format: Mapped[str] = mapped_column(String(8))  # mp4, webm, gif, apng, ...
    frames: Mapped[int] = mapped_column(Integer)
    fps: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    duration: Mapped[float] = mapped_column(Float)  # seconds
    bytes: Mapped[int] = mapped_column(BigInteger)
    source_name: Mapped[str | None] = mapped_column(String(300))  # the file name it was added from
    caption: Mapped[str | None] = mapped_column(Text)
    phash: Mapped[str] = mapped_column(String(256))  # perceptual hash, hex (see ingest.perceptual_hash)
    duplicate_of: Mapped[int | None] = mapped_column(IdType, ForeignKey("clips.id", ondelete="SET NULL"))
    duplicate_distance: Mapped[float | None] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)  # soft delete (rm)
    search_text: Mapped[str] = mapped_column(Text, default="")  # lower-case words for text search

    provenance: Mapped[Provenance] = relationship(back_populates="clip", uselist=False, cascade="all, delete-orphan")
    scores: Mapped[list[Score]] = relationship(back_populates="clip", cascade="all, delete-orphan", order_by="Score.metric")
    tags: Mapped[list[Tag]] = relationship(back_populates="clip", cascade="all, delete-orphan", order_by="Tag.tag")

    @property
    def poster_path(self) -> str:
        return derived_path(self.sha256, "poster.png")

    @property
    def preview_path(self) -> str:
        return derived_path(self.sha256, "preview.webp")


class Provenance(Base):
    """How a clip was made. Every field may be empty (a clip added from a file of unknown origin).

    A clip made by `vidgan generate` is clip `index` of VideoPipeline(checkpoint)(n=n, seed=seed,
    batch_size=batch_size, ...the condition...): the noise of one clip depends on n (one draw for
    the batch) and the numbers on the batch it ran in, so re-generation replays the whole call.
    """

    __tablename__ = "provenance"

    clip_id: Mapped[int] = mapped_column(IdType, ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)
    run: Mapped[str | None] = mapped_column(Text)  # run folder (absolute) as given to generate
    checkpoint: Mapped[str | None] = mapped_column(Text)  # weights folder that was loaded
    step: Mapped[int | None] = mapped_column(Integer, index=True)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))  # of the generator weights file
    ema: Mapped[bool | None] = mapped_column(Boolean)
    model: Mapped[str | None] = mapped_column(String(100), index=True)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    n: Mapped[int | None] = mapped_column(Integer)  # clips made by the same call
    index: Mapped[int | None] = mapped_column(Integer)  # this clip's place in that call's output
    batch_size: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[int | None] = mapped_column(Integer, index=True)  # this clip's class index
    label_name: Mapped[str | None] = mapped_column(String(200), index=True)
    text: Mapped[str | None] = mapped_column(Text)  # the sentence it was conditioned on
    first_frame: Mapped[str | None] = mapped_column(Text)  # the image file given to generate
    first_frame_sha256: Mapped[str | None] = mapped_column(String(64))  # store/assets/<sha>.png, the exact frame used
    truncation: Mapped[float | None] = mapped_column(Float)
    output_sha256: Mapped[str | None] = mapped_column(String(64))  # frames_hash of the generator's uint8 output
    settings: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the call, format, fps, versions, model config

    clip: Mapped[Clip] = relationship(back_populates="provenance")

    def settings_dict(self) -> dict:
        return json.loads(self.settings or "{}")


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("clip_id", "metric"), Index("ix_scores_metric_value", "metric", "value"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    clip_id: Mapped[int] = mapped_column(IdType, ForeignKey("clips.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))  # says what it measures: fvd2048_16f, motion, ...
    value: Mapped[float] = mapped_column(Float)
    protocol: Mapped[str] = mapped_column(Text, default="")  # how it was measured (and whether of this clip alone)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    clip: Mapped[Clip] = relationship(back_populates="scores")


class Tag(Base):
    __tablename__ = "tags"

    clip_id: Mapped[int] = mapped_column(IdType, ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)

    clip: Mapped[Clip] = relationship(back_populates="tags")


class SchemaVersion(Base):
    __tablename__ = "vidgan_schema"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    applied: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def derived_path(sha256: str, kind: str) -> str:
    """Where a clip's poster/preview lives, relative to the library root."""
    return f"{STORE}/{sha256[:2]}/{sha256}.{kind}"


def clip_path(sha256: str, fmt: str) -> str:
    return f"{STORE}/{sha256[:2]}/{sha256}.{fmt}"


def asset_path(sha256: str) -> str:
    return f"{STORE}/assets/{sha256}.png"


# ----------------------------------------------------------------------------- schema versions
#
# Each step takes the schema from version - 1 to version, inside one transaction, and is never
# changed once released: a new table or column is a new step. Step 1 creates the tables with
# the models above; when a later step changes one of them, step 1 must keep creating the shape
# it had at version 1 (freeze it here as a Table) so that old libraries upgrade the same way.

V1_TABLES = ["clips", "provenance", "scores", "tags", "vidgan_schema"]

# Version 1 also had collections of clips, which nothing ever used; step 3 drops them. Frozen here so
# that step 1 still creates the version-1 shape.
_V1_ONLY = MetaData()
Table(
    "collections", _V1_ONLY,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("name", String(200), unique=True),
    Column("description", Text),
    Column("created", DateTime(timezone=True)),
)  # fmt: skip
Table(
    "collection_clips", _V1_ONLY,
    Column("collection_id", IdType, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("clip_id", IdType, primary_key=True),
    Column("position", Integer),
)  # fmt: skip


def _step1_tables(conn) -> None:
    Base.metadata.create_all(conn, tables=[Base.metadata.tables[name] for name in V1_TABLES])
    _V1_ONLY.create_all(conn)


def _step2_fts(conn) -> None:
    # SQLite's FTS5 index over clips.search_text; other databases (and SQLite builds without FTS5)
    # search with LIKE on clips.search_text, which needs nothing here.
    if conn.dialect.name != "sqlite" or not _sqlite_has_fts5(conn):
        return
    conn.exec_driver_sql("CREATE VIRTUAL TABLE clip_search USING fts5(text, tokenize='unicode61')")
    conn.exec_driver_sql("INSERT INTO clip_search(rowid, text) SELECT id, search_text FROM clips")


def _step3_drop_collections(conn) -> None:
    _V1_ONLY.drop_all(conn)


UPGRADE_STEPS = [
    (1, "clips, provenance, scores, tags, collections", _step1_tables),
    (2, "full-text search index (SQLite FTS5)", _step2_fts),
    (3, "drop the unused collections tables", _step3_drop_collections),
]
SCHEMA_VERSION = UPGRADE_STEPS[-1][0]


def _sqlite_has_fts5(conn) -> bool:
    try:
        conn.exec_driver_sql("CREATE VIRTUAL TABLE temp.vidgan_fts_probe USING fts5(x)")
        conn.exec_driver_sql("DROP TABLE temp.vidgan_fts_probe")
        return True
    except SQLAlchemyError:
        return False


def schema_version(engine: Engine) -> int | None:
    """The library's schema version, or None for a database that is not a vidgan library."""
    if not inspect(engine).has_table("vidgan_schema"):
        return None
    with engine.connect() as conn:
        return conn.execute(select(func.max(SchemaVersion.version))).scalar() or 0


def upgrade(engine: Engine, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the missing upgrade steps up to `target`, each in its own write transaction (so two
    processes opening an old library at once apply each step once); returns the versions applied."""
    have = schema_version(engine) or 0
    if have > SCHEMA_VERSION:
        raise LibraryError(f"the library's schema is version {have}, newer than this vidgan knows ({SCHEMA_VERSION}); upgrade vidgan")
    applied = []
    for version, description, step in UPGRADE_STEPS:
        if version > target:
            break
        with _write_connection(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7243050)"))
            current = conn.execute(select(func.max(SchemaVersion.version))).scalar() if inspect(conn).has_table("vidgan_schema") else 0
            if (current or 0) >= version:
                continue
            step(conn)
            conn.execute(SchemaVersion.__table__.insert().values(version=version, description=description, applied=utcnow()))
        applied.append(version)
    return applied


# ----------------------------------------------------------------------------- engine


def database_url(url: str) -> str:
    """Plain postgresql:// URLs use psycopg (v3), the driver vidgan documents."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = database_url(url)
    if not url.startswith("sqlite"):
        try:
            return create_engine(url, pool_pre_ping=True)
        except (ImportError, SQLAlchemyError) as err:
            raise LibraryError(
                f"cannot use database {url.split('@')[-1]} ({err}); for PostgreSQL install psycopg: pip install 'psycopg[binary]'"
            ) from err
    # A long busy timeout: several processes may ingest into one SQLite library at once.
    engine = create_engine(url, connect_args={"timeout": 120})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=120000")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (the gallery) never wait for a writer
            cursor.execute("PRAGMA synchronous=NORMAL")  # with WAL: atomic and consistent; fsyncs at checkpoints
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A write transaction takes SQLite's write lock at BEGIN: two writers then queue on the busy
        # timeout instead of one failing with "database is locked" when it upgrades a read lock.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def _write_connection(engine: Engine):
    with engine.execution_options(sqlite_immediate=True).begin() as conn:
        yield conn


# ----------------------------------------------------------------------------- the library


class Library:
    """A library folder and its catalog. Open with `Library.open(path)`; create with `Library.init(path)`."""

    def __init__(self, root: Path, url: str, use_fts: bool | None = None):
        self.root = Path(root).resolve()
        self.url = url
        self.engine = make_engine(url)
        try:
            version = schema_version(self.engine)
        except (OperationalError, SQLAlchemyError) as err:
            raise LibraryError(f"{self.root}: cannot open its catalog ({_short(err)}); check the database URL in {CONFIG_FILE}") from err
        if version is None:
            raise LibraryError(f"{self.root}: not a vidgan library (no catalog tables); create one with `vidgan library init {self.root}`")
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
    def open(cls, root: str | Path, use_fts: bool | None = None) -> Library:
        root = Path(root)
        if not root.is_dir() or not ((root / DB_FILE).is_file() or (root / CONFIG_FILE).is_file()):
            raise LibraryError(
                f"{root}: not a vidgan library (no {DB_FILE} or {CONFIG_FILE}); create one with `vidgan library init {root}`"
            )
        return cls(root, cls.url_for(root), use_fts=use_fts)

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
