"""Tables. The index is rebuildable from object metadata alone (see storage.layout)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Camera(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=200)
    rtsp_url: str = Field(max_length=2000)
    area_id: str | None = Field(default=None, max_length=64)
    enabled: bool = True
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class Segment(SQLModel, table=True):
    __table_args__ = (
        Index("ix_segment_camera_start", "camera_id", "start_ms"),
        UniqueConstraint("key", "version_id", name="uq_segment_key_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64)
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    media_duration_ms: int
    key: str = Field(max_length=300)
    version_id: str = Field(max_length=200)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    retain_until_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    lock_mode: str | None = Field(default=None, max_length=20)
    codec: str = Field(default="", max_length=20)
    audio_codec: str = Field(default="", max_length=20)
    width: int = 0
    height: int = 0
    frames: int = 0
    session_id: str = Field(default="", max_length=64)
    sequence: int = 0
    recorder_id: str = Field(default="", max_length=64)
    # stored | garbage (garbage = marked for deletion after expiry; never before)
    status: str = Field(default="stored", max_length=16)


class Gap(SQLModel, table=True):
    """An interval with no footage and why: timeout, refused, auth_failed,
    not_rtsp, no_video, stream_ended, decode_error, spool_full, recorder_down."""

    __table_args__ = (
        Index("ix_gap_camera_start", "camera_id", "start_ms"),
        UniqueConstraint("camera_id", "start_ms", "reason", name="uq_gap_camera_start_reason"),
    )

    id: int | None = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64)
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(max_length=32)
    detail: str = Field(default="", max_length=2000)
