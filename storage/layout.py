"""Object keys and user metadata: the contract that lets the index be rebuilt.

Key (listable by camera and hour)::

    v1/{camera_id}/{YYYY}/{MM}/{DD}/{HH}/{start:%Y%m%dT%H%M%S.%fZ}-{duration_ms}.mp4

User metadata is flat US-ASCII strings (S3 allows nothing else); times are UTC
ISO 8601 with milliseconds; text is percent-encoded (UTF-8), so an area called
力学室 survives the round trip.
"""

from __future__ import annotations

from urllib.parse import quote, unquote
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone

from labwitness.ids import check_entity_id

SCHEMA = "1"


def check_camera_id(camera_id: str) -> str:
    """The camera id grammar of :mod:`labwitness.ids` (it becomes a key prefix)."""
    return check_entity_id(camera_id, "摄像机编号", "camera id")


def iso_ms(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def segment_key(camera_id: str, start: datetime, duration_ms: int) -> str:
    s = start.astimezone(timezone.utc)
    return (
        f"v1/{check_camera_id(camera_id)}/{s:%Y/%m/%d/%H}/"
        f"{s:%Y%m%dT%H%M%S.%f}Z-{duration_ms}.mp4"
    )


def camera_hour_prefix(camera_id: str, hour: datetime | None = None) -> str:
    if hour is None:
        return f"v1/{check_camera_id(camera_id)}/"
    return f"v1/{check_camera_id(camera_id)}/{hour.astimezone(timezone.utc):%Y/%m/%d/%H}/"


@dataclass(frozen=True)
class SegmentMeta:
    """Everything needed to rebuild a Segment index row from the object alone."""

    camera_id: str
    start: datetime
    end: datetime
    media_duration_ms: int
    codec: str
    width: int
    height: int
    sha256: str
    size: int
    recorder_id: str
    session_id: str
    sequence: int
    area_id: str = ""
    audio_codec: str = ""
    frames: int = 0
    epoch: int = 0  # the camera lease's epoch of the writer (docs/cluster.md); 0: single box, no lease

    @property
    def key(self) -> str:
        return segment_key(self.camera_id, self.start, round((self.end - self.start).total_seconds() * 1000))

    def to_user_metadata(self) -> dict[str, str]:
        out = {"labwitness-schema": SCHEMA}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f"lw-{f.name.replace('_', '-')}"] = iso_ms(value) if isinstance(value, datetime) else quote(str(value), safe="")
        return out

    @classmethod
    def from_user_metadata(cls, meta: dict[str, str]) -> "SegmentMeta":
        # S3 servers differ in the case they return header names in.
        low = {k.lower().removeprefix("x-amz-meta-"): v for k, v in meta.items()}
        kwargs = {}
        for f in fields(cls):
            raw = low.get(f"lw-{f.name.replace('_', '-')}")
            if raw is None:
                continue
            if f.type in ("datetime", datetime):
                kwargs[f.name] = parse_iso(raw)
            elif f.type in ("int", int):
                kwargs[f.name] = int(raw)
            else:
                kwargs[f.name] = unquote(raw)
        return cls(**kwargs)

    def to_json(self) -> dict:
        d = asdict(self)
        d["start"] = iso_ms(self.start)
        d["end"] = iso_ms(self.end)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "SegmentMeta":
        d = dict(d)
        d["start"] = parse_iso(d["start"])
        d["end"] = parse_iso(d["end"])
        return cls(**d)
