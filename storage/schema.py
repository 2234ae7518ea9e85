"""SQLAlchemy 2 typed models. The schema is created only by Alembic migrations (migrations/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATUSES = ("queued", "running", "done", "failed")
REVIEW_DECISIONS = ("fake", "real", "unsure")  # confirm fake / mark real / unsure


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB}


class Media(Base):
    """One row per distinct content (sha256), whatever key or bucket it was uploaded under."""

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(32))
    codec: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float | None] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float)
    frame_count: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MediaObject(Base):
    """Where content was seen: bucket/key (and ETag), with the caller's metadata of the last request."""

    __tablename__ = "media_objects"
    __table_args__ = (UniqueConstraint("bucket", "key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(128))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    media_id: Mapped[int | None] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    caller_metadata: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Job(Base):
    """One analysis of one content by one pipeline version (unique), or a failure to fetch an object."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("media_id", "pipeline_version"),
        Index(
            "uq_jobs_object_without_media",
            "bucket",
            "key",
            "pipeline_version",
            unique=True,
            postgresql_where=text("media_id IS NULL"),
        ),
        Index("ix_jobs_status_finished_at", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    media_id: Mapped[int | None] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"))
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(Text)
    pipeline_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    lineage: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    timings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    caller_metadata: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    sampling_method: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Frame(Base):
    __tablename__ = "frames"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    frame_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp_s: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    faces: Mapped[int] = mapped_column(Integer)


class FaceScore(Base):
    """One detector's score for one face in one frame, with the lineage that produced it."""

    __tablename__ = "face_scores"
    __table_args__ = (UniqueConstraint("job_id", "frame_index", "face_index", "detector"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    frame_index: Mapped[int] = mapped_column(Integer)
    face_index: Mapped[int] = mapped_column(Integer)
    timestamp_s: Mapped[float] = mapped_column(Float)
    track_id: Mapped[int] = mapped_column(Integer)
    box_x: Mapped[float] = mapped_column(Float)
    box_y: Mapped[float] = mapped_column(Float)
    box_w: Mapped[float] = mapped_column(Float)
    box_h: Mapped[float] = mapped_column(Float)
    face_confidence: Mapped[float] = mapped_column(Float)
    detector: Mapped[str] = mapped_column(String(64))
    detector_version: Mapped[str] = mapped_column(String(128))
    weights: Mapped[dict[str, Any]] = mapped_column()  # model-store name -> sha256
    sampling: Mapped[dict[str, Any]] = mapped_column()  # frames requested, method, face detector settings
    score: Mapped[float] = mapped_column(Float)


class FrameScore(Base):
    """One whole-frame detector's score for one sampled frame, with lineage."""

    __tablename__ = "frame_scores"
    __table_args__ = (UniqueConstraint("job_id", "frame_index", "detector"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    frame_index: Mapped[int] = mapped_column(Integer)
    timestamp_s: Mapped[float] = mapped_column(Float)
    detector: Mapped[str] = mapped_column(String(64))
    detector_version: Mapped[str] = mapped_column(String(128))
    weights: Mapped[dict[str, Any]] = mapped_column()
    sampling: Mapped[dict[str, Any]] = mapped_column()
    score: Mapped[float] = mapped_column(Float)


class Track(Base):
    __tablename__ = "tracks"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    track_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    faces: Mapped[int] = mapped_column(Integer)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    detectors: Mapped[dict[str, Any]] = mapped_column()
    counted: Mapped[bool] = mapped_column(Boolean)


class Verdict(Base):
    __tablename__ = "verdicts"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(16), index=True)
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    policy: Mapped[str] = mapped_column(String(64))
    detectors: Mapped[dict[str, Any]] = mapped_column()
    frames_requested: Mapped[int] = mapped_column(Integer)
    frames_decoded: Mapped[int] = mapped_column(Integer)
    faces: Mapped[int] = mapped_column(Integer)
    tracks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Explanation(Base):
    """A short text about a verdict, from the evidence or a language model: stored as data, never obeyed."""

    __tablename__ = "explanations"
    __table_args__ = (UniqueConstraint("job_id", "explainer"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    explainer: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[str | None] = mapped_column(String(128))
    prompt: Mapped[str | None] = mapped_column(Text)
    # what was shown to the explainer: frame indices, tracks, scores (before `text`, which shadows sql text())
    evidence: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    text: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(String(16))
    agrees: Mapped[bool | None] = mapped_column(Boolean)
    latency_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Review(Base):
    """A reviewer's decision about a media's content. The newest one overrides the model in every query."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("decision IN ('fake', 'real', 'unsure')", name="decision"),
        Index("ix_reviews_media_id_created_at", "media_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"))
    # the job whose results the reviewer looked at, and what the model said then (kept for audits)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    model_label: Mapped[str | None] = mapped_column(String(16))
    model_score: Mapped[float | None] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    """One attempt to POST a job's final verdict to its callback URL (status code, or the error)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("job_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
