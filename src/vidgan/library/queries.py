"""Reading the catalog: searching clips, facets, counts, and a clip as a dict (for the CLI, the gallery and exports)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import (
    func,
    nulls_last,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, selectinload

from vidgan.library.catalog import Library
from vidgan.library.tables import MAX_ID, Clip, Provenance, Score, Tag


@dataclass
class ClipQuery:
    """What `ls`, `export` and the gallery ask for. Every filter narrows (AND)."""

    model: str | None = None
    label: str | None = None  # a class index ("3") or a class name ("cat")
    text: str | None = None  # words, all of which must occur (prefixes of words in the index)
    tags: list[str] = field(default_factory=list)
    min_scores: dict[str, float] = field(default_factory=dict)
    ids: list[int] | None = None
    run: str | None = None
    sort: str = "-id"  # id, created, or a metric name; a leading '-' sorts descending
    include_deleted: bool = False
    only_deleted: bool = False
    limit: int | None = None
    offset: int = 0


_WORD = re.compile(r"\w+", re.UNICODE)
_METRIC = re.compile(r"[A-Za-z0-9_.]{1,100}")
SORT_COLUMNS = {"id": Clip.id, "created": Clip.created, "frames": Clip.frames, "duration": Clip.duration}


def check_query(q: ClipQuery) -> None:
    """Refuse a sort key that is neither a column nor a metric name, and a search with no words."""
    key = q.sort.lstrip("-+") or "id"
    if key not in SORT_COLUMNS and not _METRIC.fullmatch(key):
        raise ValueError(
            f"sort {q.sort!r}: use id, created, frames, duration or a metric name (letters, digits, _ and .), '-' first to reverse"
        )
    if q.text is not None and q.text.strip() and not _WORD.findall(q.text):
        raise ValueError(f"search text {q.text!r} has no words (letters or digits) to look for")


def find_clips(lib: Library, session: Session, q: ClipQuery) -> tuple[int, list[Clip]]:
    """(number of matching clips, the clips of the requested page) with provenance, scores and tags loaded."""
    check_query(q)
    stmt = select(Clip).join(Clip.provenance, isouter=True)
    if q.only_deleted:
        stmt = stmt.where(Clip.deleted.is_not(None))
    elif not q.include_deleted:
        stmt = stmt.where(Clip.deleted.is_(None))
    if q.model:
        stmt = stmt.where(Provenance.model == q.model)
    if q.run:
        stmt = stmt.where(Provenance.run == q.run)
    if q.label not in (None, ""):
        label = str(q.label)
        stmt = stmt.where(
            or_(Provenance.label == int(label), Provenance.label_name == label)
            if label.lstrip("-").isdigit() and abs(int(label)) < 2**31
            else Provenance.label_name == label
        )
    for tag in q.tags:
        stmt = stmt.where(Clip.id.in_(select(Tag.clip_id).where(Tag.tag == tag)))
    for metric, minimum in q.min_scores.items():
        stmt = stmt.where(Clip.id.in_(select(Score.clip_id).where(Score.metric == metric, Score.value >= minimum)))
    if q.ids is not None:
        stmt = stmt.where(Clip.id.in_([i for i in q.ids if 0 < i <= MAX_ID]))
    if q.text:
        words = [w.lower() for w in _WORD.findall(q.text)]
        if lib.fts and words:
            match = " AND ".join('"' + w.replace('"', '""') + '"*' for w in words)
            stmt = stmt.where(Clip.id.in_(text("SELECT rowid FROM clip_search WHERE clip_search MATCH :match").bindparams(match=match)))
        else:
            for w in words:
                escaped = w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                stmt = stmt.where(Clip.search_text.like(f"%{escaped}%", escape="\\"))
    total = session.execute(select(func.count()).select_from(stmt.with_only_columns(Clip.id).subquery())).scalar_one()

    descending = q.sort.startswith("-")
    key = q.sort.lstrip("-+") or "id"
    if key in SORT_COLUMNS:
        column = SORT_COLUMNS[key]
        stmt = stmt.order_by(column.desc() if descending else column.asc(), Clip.id.desc() if descending else Clip.id.asc())
    else:  # a metric; clips without that score come last
        score = select(Score.value).where(Score.clip_id == Clip.id, Score.metric == key).scalar_subquery()
        stmt = stmt.order_by(nulls_last(score.desc() if descending else score.asc()), Clip.id.asc())
    if q.offset:
        stmt = stmt.offset(q.offset)
    if q.limit is not None:
        stmt = stmt.limit(q.limit)
    stmt = stmt.options(selectinload(Clip.provenance), selectinload(Clip.scores), selectinload(Clip.tags))
    return total, list(session.execute(stmt).scalars())


def parse_scores(items: Iterable[str]) -> dict[str, float]:
    """["fvd=300", "motion=0.1"] -> {"fvd": 300.0, ...}; one clear error for a bad item."""
    scores = {}
    for item in items:
        metric, sep, value = item.partition("=")
        try:
            if not sep or not metric.strip():
                raise ValueError
            scores[metric.strip()] = float(value)
        except ValueError:
            raise ValueError(f"score {item!r}: write METRIC=VALUE, e.g. motion=0.05") from None
    return scores


def get_clip(session: Session, clip_id: int, include_deleted: bool = True) -> Clip | None:
    if not (0 < clip_id <= MAX_ID):
        return None
    stmt = select(Clip).where(Clip.id == clip_id).options(selectinload(Clip.provenance), selectinload(Clip.scores), selectinload(Clip.tags))
    clip = session.execute(stmt).scalar_one_or_none()
    if clip is not None and clip.deleted is not None and not include_deleted:
        return None
    return clip


def facets(session: Session) -> dict:
    """The values the gallery's filters offer: models, labels, tags (of clips not deleted), metrics."""
    live = Clip.deleted.is_(None)
    models = (
        session.execute(
            select(Provenance.model)
            .join(Clip, Clip.id == Provenance.clip_id)
            .where(live, Provenance.model.is_not(None))
            .distinct()
            .order_by(Provenance.model)
        )
        .scalars()
        .all()
    )
    labels = session.execute(
        select(Provenance.label, Provenance.label_name)
        .join(Clip, Clip.id == Provenance.clip_id)
        .where(live, or_(Provenance.label.is_not(None), Provenance.label_name.is_not(None)))
        .distinct()
    ).all()
    tags = session.execute(
        select(Tag.tag, func.count()).join(Clip, Clip.id == Tag.clip_id).where(live).group_by(Tag.tag).order_by(Tag.tag)
    ).all()
    # every score counts here (one index scan), deleted clips' too until gc: the ranges are only hints
    metrics = session.execute(
        select(Score.metric, func.min(Score.value), func.max(Score.value)).group_by(Score.metric).order_by(Score.metric)
    ).all()
    label_list = sorted({(lab, name) for lab, name in labels}, key=lambda p: (p[0] is None, p[0] if p[0] is not None else 0, p[1] or ""))
    return {
        "models": list(models),
        "labels": [{"value": name if name is not None else str(lab), "label": lab, "name": name} for lab, name in label_list],
        "tags": [{"tag": t, "count": c} for t, c in tags],
        "metrics": [{"metric": m, "min": lo, "max": hi} for m, lo, hi in metrics],
    }


def count_clips(session: Session, include_deleted: bool = False) -> int:
    stmt = select(func.count()).select_from(Clip)
    if not include_deleted:
        stmt = stmt.where(Clip.deleted.is_(None))
    return session.execute(stmt).scalar_one()


def export_name(clip: dict) -> str:
    """A clip's file name in exports and downloads: clip_000042.mp4 (a lossless animated PNG as .png)."""
    return f"clip_{clip['id']:06d}.{'png' if clip['format'] == 'apng' else clip['format']}"


def clip_dict(clip: Clip, full: bool = True) -> dict:
    """A clip as JSON-able data: what `ls --json`, export manifests and the web API return."""
    prov = clip.provenance
    data = {
        "id": clip.id,
        "file": clip.path,
        "format": clip.format,
        "frames": clip.frames,
        "fps": clip.fps,
        "width": clip.width,
        "height": clip.height,
        "duration": clip.duration,
        "bytes": clip.bytes,
        "sha256": clip.sha256,
        "frames_sha256": clip.frames_sha256,
        "created": clip.created.isoformat() if clip.created else None,
        "deleted": clip.deleted.isoformat() if clip.deleted else None,
        "caption": clip.caption,
        "source_name": clip.source_name,
        "duplicate_of": clip.duplicate_of,
        "duplicate_distance": clip.duplicate_distance,
        "poster": clip.poster_path,
        "preview": clip.preview_path,
        "tags": [t.tag for t in clip.tags],
        "scores": {s.metric: s.value for s in clip.scores},
        "model": prov.model if prov else None,
        "label": prov.label if prov else None,
        "label_name": prov.label_name if prov else None,
    }
    if full:
        data["score_protocols"] = {s.metric: s.protocol for s in clip.scores}
        data["provenance"] = (
            None
            if prov is None
            else {
                "run": prov.run,
                "checkpoint": prov.checkpoint,
                "step": prov.step,
                "checkpoint_sha256": prov.checkpoint_sha256,
                "ema": prov.ema,
                "model": prov.model,
                "seed": prov.seed,
                "n": prov.n,
                "index": prov.index,
                "batch_size": prov.batch_size,
                "label": prov.label,
                "label_name": prov.label_name,
                "text": prov.text,
                "first_frame": prov.first_frame,
                "first_frame_sha256": prov.first_frame_sha256,
                "truncation": prov.truncation,
                "output_sha256": prov.output_sha256,
                "settings": prov.settings_dict(),
            }
        )
    return data
