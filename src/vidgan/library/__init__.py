"""A library of generated clips, one module per job:

catalog.py      a library folder: opening, creating, sessions (SQLite by default, PostgreSQL)
tables.py       the SQLAlchemy tables and where a clip's files live in the store
schema.py       schema versions and upgrades, the database engine
queries.py      searching clips, facets, a clip as a dict
hashing.py      file / frames / perceptual hashes and the motion score
store.py        the content-addressed file store: durable writes, previews, first-frame assets
ingest.py       clips into the library, with near-duplicate detection
provenance.py   the records of a `vidgan generate` call, and regenerating a clip from its record (torch)
maintenance.py  check / repair, soft delete, garbage collection, tags
export.py       clips out as a folder or zip with a manifest
cli.py, web/    the `vidgan library` commands and the gallery
"""

from vidgan.library.catalog import Library
from vidgan.library.queries import ClipQuery, clip_dict, find_clips
from vidgan.library.tables import LibraryError

__all__ = ["ClipQuery", "Library", "LibraryError", "clip_dict", "find_clips"]
