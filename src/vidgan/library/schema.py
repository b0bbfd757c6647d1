"""Catalog schema versions and upgrades, and the database engine (SQLite by default, PostgreSQL)."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from vidgan.library.tables import Base, IdType, LibraryError, SchemaVersion, utcnow

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


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for the catalog. read_only (SQLite): opened immutable, so a library on a read-only
    disk or folder can be listed and served (no journal, no locks; writes fail)."""
    url = database_url(url)
    if read_only and url.startswith("sqlite:///"):
        import sqlite3
        from urllib.parse import quote

        path = url[len("sqlite:///") :]
        return create_engine("sqlite://", creator=lambda: sqlite3.connect(f"file:{quote(path)}?mode=ro&immutable=1", uri=True))
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
