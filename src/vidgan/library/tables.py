"""The catalog's tables (SQLAlchemy 2) and where a clip's files live in the store."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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
