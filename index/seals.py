"""The seal table and the rows a seal takes in (retention.seals builds and signs the seals).

A seal takes every ``stored`` segment row and every gap row whose ``seal_seq`` is
still NULL, and marks them with its number in the transaction that records the seal.
Marking rows (instead of keeping a segment-id watermark) is what keeps late rows
from being skipped: on PostgreSQL an id is handed out before its transaction
commits, so a segment with a lower id than one already sealed can appear later
(a spool backlog drained by two uploaders, a slow commit); it has no mark, so the
next seal takes it in.  A gap that grows gets its mark cleared (index.queries) and
is sealed again with its new end.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection, Engine

from index.models import Gap, Seal, Segment
from index.queries import db_errors, db_guarded

MARK_BATCH = 500  # ids per UPDATE ... IN (...): far below SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class LeafRow:
    """What a seal's leaf is made of (retention.seal_doc.leaf_data)."""

    id: int
    camera_id: str
    key: str
    version_id: str
    sha256: str
    size: int
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class GapRow:
    id: int
    camera_id: str
    start_ms: int
    end_ms: int
    reason: str


class SealStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @db_guarded
    def last(self) -> Seal | None:
        with self.engine.connect() as c:
            row = c.execute(select(Seal.__table__).order_by(Seal.__table__.c.seq.desc()).limit(1)).first()
        return Seal(**row._mapping) if row else None

    @db_guarded
    def get(self, seq: int) -> Seal | None:
        with self.engine.connect() as c:
            row = c.execute(select(Seal.__table__).where(Seal.__table__.c.seq == seq)).first()
        return Seal(**row._mapping) if row else None

    @db_guarded
    def since(self, created_ms: int = 0) -> list[Seal]:
        t = Seal.__table__
        with self.engine.connect() as c:
            return [Seal(**r._mapping) for r in c.execute(select(t).where(t.c.created_ms >= created_ms).order_by(t.c.seq))]

    @db_guarded
    def unsealed_segments(self, limit: int) -> list[LeafRow]:
        """The oldest ``limit`` stored segment rows without a seal, by id."""
        seg = Segment.__table__
        with self.engine.connect() as c:
            rows = c.execute(select(seg.c.id, seg.c.camera_id, seg.c.key, seg.c.version_id, seg.c.sha256, seg.c.size,
                                    seg.c.start_ms, seg.c.end_ms)
                             .where(seg.c.seal_seq.is_(None), seg.c.status == "stored").order_by(seg.c.id).limit(limit))
            return [LeafRow(*r) for r in rows]

    @db_guarded
    def unsealed_gaps(self) -> list[GapRow]:
        gap = Gap.__table__
        with self.engine.connect() as c:
            rows = c.execute(select(gap.c.id, gap.c.camera_id, gap.c.start_ms, gap.c.end_ms, gap.c.reason)
                             .where(gap.c.seal_seq.is_(None)).order_by(gap.c.id))
            return [GapRow(*r) for r in rows]

    @db_guarded
    def sealed_segments(self, seq: int) -> list[LeafRow]:
        """The rows seal ``seq`` took in, in leaf order (camera, then id)."""
        seg = Segment.__table__
        with self.engine.connect() as c:
            rows = c.execute(select(seg.c.id, seg.c.camera_id, seg.c.key, seg.c.version_id, seg.c.sha256, seg.c.size,
                                    seg.c.start_ms, seg.c.end_ms)
                             .where(seg.c.seal_seq == seq).order_by(seg.c.camera_id, seg.c.id))
            return [LeafRow(*r) for r in rows]

    @db_guarded
    def seal_of(self, segment_ids: list[int]) -> dict[int, int | None]:
        seg = Segment.__table__
        out: dict[int, int | None] = {}
        with self.engine.connect() as c:
            for i in range(0, len(segment_ids), MARK_BATCH):
                part = segment_ids[i:i + MARK_BATCH]
                out.update({sid: seq for sid, seq in c.execute(select(seg.c.id, seg.c.seal_seq).where(seg.c.id.in_(part)))})
        return out

    @db_guarded
    def insert(self, seal: Seal) -> None:
        with self.engine.begin() as c:
            c.execute(Seal.__table__.insert().values(**seal.model_dump()))

    @db_guarded
    def not_witness_queued(self) -> list[Seal]:
        t = Seal.__table__
        with self.engine.connect() as c:
            return [Seal(**r._mapping) for r in c.execute(select(t).where(t.c.witness_queued.is_(False)).order_by(t.c.seq))]

    @db_guarded
    def mark_witness_queued(self, seq: int) -> None:
        t = Seal.__table__
        with self.engine.begin() as c:
            c.execute(update(t).where(t.c.seq == seq).values(witness_queued=True))

    @db_guarded
    def newest_created_ms(self) -> int | None:
        with self.engine.connect() as c:
            return c.execute(select(func.max(Seal.__table__.c.created_ms))).scalar()

    @contextmanager
    def recording(self, seal: Seal, leaves: list[LeafRow], gaps: list[GapRow]) -> Iterator[Connection]:
        """Insert the seal row and mark its rows in one transaction, committed when the block
        (which stores the document) ends without an exception; rolled back otherwise."""
        seg, gap = Segment.__table__, Gap.__table__
        with db_errors(), self.engine.begin() as c:
            c.execute(Seal.__table__.insert().values(**seal.model_dump()))
            ids = [r.id for r in leaves]
            for i in range(0, len(ids), MARK_BATCH):
                c.execute(update(seg).where(seg.c.id.in_(ids[i:i + MARK_BATCH])).values(seal_seq=seal.seq))
            for g in gaps:  # only as sealed: a gap that grew meanwhile stays unsealed for the next seal
                c.execute(update(gap).where(and_(gap.c.id == g.id, gap.c.end_ms == g.end_ms)).values(seal_seq=seal.seq))
            yield c
