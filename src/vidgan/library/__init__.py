"""A library of generated clips, one module per job:

catalog.py      the SQLAlchemy tables, schema upgrades, queries (SQLite by default, PostgreSQL)
hashing.py      file / frames / perceptual hashes and the motion score
store.py        the content-addressed file store: durable writes, previews, first-frame assets
ingest.py       clips into the library, with near-duplicate detection
provenance.py   the records of a `vidgan generate` call, and regenerating a clip from its record (torch)
maintenance.py  check / repair, soft delete, garbage collection, tags
export.py       clips out as a folder or zip with a manifest
cli.py, web/    the `vidgan library` commands and the gallery
"""

from vidgan.library.catalog import Library, LibraryError
from vidgan.library.queries import ClipQuery, clip_dict, find_clips

__all__ = ["ClipQuery", "Library", "LibraryError", "clip_dict", "find_clips"]
