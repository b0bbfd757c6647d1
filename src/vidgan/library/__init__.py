"""A library of generated clips: a catalog with provenance (catalog.py), content-addressed files,
previews and near-duplicate checks (ingest.py), the `vidgan library` commands (cli.py) and a web
gallery (web/)."""

from vidgan.library.catalog import ClipQuery, Library, LibraryError, clip_dict, find_clips

__all__ = ["ClipQuery", "Library", "LibraryError", "clip_dict", "find_clips"]
