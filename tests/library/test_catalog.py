"""Catalog round trips on every backend (SQLite + FTS5, SQLite + LIKE, PostgreSQL): ingest real
clips with provenance, then every filter, sort and page of the query; schema upgrades."""

import json

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from vidgan.library.catalog import Library, create_catalog
from vidgan.library.ingest import Ingester
from vidgan.library.maintenance import collect_garbage, edit_tags, soft_delete
from vidgan.library.queries import ClipQuery, clip_dict, facets, find_clips, get_clip
from vidgan.library.schema import SCHEMA_VERSION, make_engine, schema_version
from vidgan.library.tables import Clip, LibraryError, Provenance, SchemaVersion

# (model, label, label_name, caption, tags, scores) for six different clips
CLIPS = [
    ("videogan", 3, "3", "digits 3 and 5 moving left", ["sky", "best"], {"fvd2048_16f": 300.0}),
    ("tgan", 1, "1", "a red circle bouncing", ["sky"], {"fvd2048_16f": 450.0}),
    ("videogan", None, "cat", "a cat walking", [], {}),
    ("mocogan", 3, "3", None, ["best"], {"fvd2048_16f": 120.0}),
    ("videogan", 7, "7", "digit seven drifting", ["night"], {}),
    (None, None, None, "found footage", [], {}),
]


def fill(lib: Library, clip_files) -> list[int]:
    ingester = Ingester(lib)
    ids = []
    for path, (model, label, name, caption, tags, scores) in zip(clip_files, CLIPS):
        prov = {
            "model": model,
            "label": label,
            "label_name": name,
            "seed": 11,
            "n": 6,
            "index": len(ids),
            "settings": {"call": {"n": 6, "seed": 11}, "fps": 10.0},
        }
        result = ingester.add_file(
            path, provenance={k: v for k, v in prov.items() if v is not None}, tags=tags, scores=scores, caption=caption
        )
        assert result.status == "added", result.line()
        ids.append(result.clip_id)
    return ids


def ids_of(lib: Library, **query) -> list[int]:
    with lib.session() as s:
        _, clips = find_clips(lib, s, ClipQuery(sort=query.pop("sort", "id"), **query))
        return [c.id for c in clips]


def test_round_trip_with_every_filter(library_factory, clip_files):
    lib = library_factory()
    a, b, c, d, e, f = fill(lib, clip_files)

    assert ids_of(lib) == [a, b, c, d, e, f]
    assert ids_of(lib, model="videogan") == [a, c, e]
    assert ids_of(lib, label="3") == [a, d]  # class index
    assert ids_of(lib, label="cat") == [c]  # class name
    assert ids_of(lib, tags=["sky"]) == [a, b]
    assert ids_of(lib, tags=["sky", "best"]) == [a]
    assert ids_of(lib, tags=["nothing"]) == []
    assert ids_of(lib, min_scores={"fvd2048_16f": 300}) == [a, b]
    assert ids_of(lib, min_scores={"motion": 0.0}) == [a, b, c, d, e, f]  # every clip gets a motion score
    assert ids_of(lib, model="videogan", tags=["best"]) == [a]
    assert ids_of(lib, ids=[f, b, 10**30]) == [b, f]  # an absurd id matches nothing

    # text search: captions, tags, model, label names; all words must occur; word prefixes match
    assert ids_of(lib, text="circle") == [b]
    assert ids_of(lib, text="digit") == [a, e]
    assert ids_of(lib, text="moving digits") == [a]
    assert ids_of(lib, text="night") == [e]  # a tag
    assert ids_of(lib, text="mocogan") == [d]  # the model
    assert ids_of(lib, text="cat") == [c]
    assert ids_of(lib, text='"; DROP TABLE clips; --') == []  # quotes and SQL are only words
    assert ids_of(lib, text="100%") == []

    # sorting by a metric: clips without it last, in id order
    assert ids_of(lib, sort="fvd2048_16f") == [d, a, b, c, e, f]
    assert ids_of(lib, sort="-fvd2048_16f") == [b, a, d, c, e, f]
    assert ids_of(lib, sort="-id") == [f, e, d, c, b, a]
    with lib.session() as s:
        total, page = find_clips(lib, s, ClipQuery(sort="id", limit=2, offset=2))
        assert total == 6 and [x.id for x in page] == [c, d]

    # the full record survives the round trip
    with lib.session() as s:
        data = clip_dict(get_clip(s, a))
    assert data["model"] == "videogan" and data["label"] == 3 and data["tags"] == ["best", "sky"]
    assert data["scores"]["fvd2048_16f"] == 300.0 and 0 < data["scores"]["motion"] < 1
    assert data["provenance"]["seed"] == 11 and data["provenance"]["settings"] == {"call": {"n": 6, "seed": 11}, "fps": 10.0}
    assert data["frames"] == 8 and data["width"] == 32 and data["format"] == "mp4" and data["fps"] == 10.0
    assert (lib.root / data["file"]).is_file() and (lib.root / data["poster"]).is_file() and (lib.root / data["preview"]).is_file()
    json.dumps(data)  # JSON-able as it is

    with lib.session() as s:
        f_ = facets(s)
    assert f_["models"] == ["mocogan", "tgan", "videogan"]
    assert {t["tag"]: t["count"] for t in f_["tags"]} == {"best": 2, "night": 1, "sky": 2}
    assert [m["metric"] for m in f_["metrics"]] == ["fvd2048_16f", "motion"]
    assert {x["value"] for x in f_["labels"]} == {"1", "3", "7", "cat"}

    # tag edits are searchable at once; soft delete hides, undo restores, gc removes for good
    edit_tags(lib, [c], add=["sunset glow"], remove=[])
    assert ids_of(lib, text="sunset") == [c] and ids_of(lib, tags=["sunset glow"]) == [c]
    edit_tags(lib, [a], add=[], remove=["sky"])
    assert ids_of(lib, tags=["sky"]) == [b]
    soft_delete(lib, [b, c])
    assert ids_of(lib) == [a, d, e, f] and ids_of(lib, text="sunset") == []
    assert ids_of(lib, only_deleted=True) == [b, c]
    soft_delete(lib, [c], undo=True)
    assert ids_of(lib, text="sunset") == [c]
    removed, files, _ = collect_garbage(lib)
    assert removed == 1 and files == 3  # the clip, its poster and its preview
    with lib.session() as s:
        assert get_clip(s, b) is None
    assert ids_of(lib, include_deleted=True) == [a, c, d, e, f]
    with pytest.raises(LibraryError, match="no clip"):
        soft_delete(lib, [b])


def test_schema_upgrade_from_version_1(tmp_path, clip_files):
    root = tmp_path / "old"
    create_catalog(root, target=1)  # a library made by a vidgan that knew only version 1
    engine = make_engine(Library.url_for(root))
    assert schema_version(engine) == 1
    with Session(engine) as s:
        s.add(
            Clip(
                sha256="a" * 64,
                frames_sha256="b" * 64,
                path="store/aa/x.mp4",
                format="mp4",
                frames=8,
                fps=10.0,
                width=32,
                height=32,
                duration=0.8,
                bytes=1,
                phash="00" * 128,
                search_text="an old clip of waves",
                provenance=Provenance(model="videogan"),
            )
        )
        s.commit()
    engine.dispose()

    assert {"collections", "collection_clips"} <= set(inspect(make_engine(Library.url_for(root))).get_table_names())
    with Library.open(root) as lib:  # opening upgrades: 2 adds the FTS5 index, filled from the old rows; 3 drops unused tables
        assert schema_version(lib.engine) == SCHEMA_VERSION == 3 and lib.fts
        with lib.session() as s:
            assert [v.version for v in s.execute(select(SchemaVersion).order_by(SchemaVersion.version)).scalars()] == [1, 2, 3]
        assert len(ids_of(lib, text="waves")) == 1 and ids_of(lib, text="ocean") == []
        tables = set(inspect(lib.engine).get_table_names())
        assert "clips" in tables and not {"collections", "collection_clips"} & tables

    with Library.open(root) as lib, lib.session() as s:  # a library from a newer vidgan is refused, not damaged
        s.add(SchemaVersion(version=99, description="from the future"))
        s.commit()
    with pytest.raises(LibraryError, match="newer than this vidgan"):
        Library.open(root)


def test_not_a_library(tmp_path):
    with pytest.raises(LibraryError, match="not a vidgan library"):
        Library.open(tmp_path)
    (tmp_path / "library.json").write_text("{not json")
    with pytest.raises(LibraryError, match="library.json"):
        Library.open(tmp_path)
