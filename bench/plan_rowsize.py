"""Bytes per index row on PostgreSQL, for ``labwitness plan`` (retention.capacity's DB_BYTES_PER_*).

    python -m bench.plan_rowsize [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--rows 100000]

Makes a throwaway database, migrates it to head, inserts ``--rows`` segment rows shaped
like the recorder's (real key layout, 64-hex SHA-256, a SeaweedFS-like version id, h264/aac,
1080p), a gap per 50 segments and a journal_outbox row per segment (its JSON body as
``index.journal`` writes it), VACUUM ANALYZEs, and prints pg_total_relation_size / rows
(heap + TOAST + every index) per table.  Then it copies segment and gap into tables
partitioned by month on ``start_ms`` (primary key (id, start_ms), as migration 0015 does)
and prints the same figure for them.  Nothing is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, text

from index.db import make_engine
from index.migrate import upgrade
from storage.layout import segment_key


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--rows", type=int, default=100_000)
    a = ap.parse_args()
    name = f"lw_rowsize_{uuid.uuid4().hex[:8]}"
    admin = create_engine(a.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = a.pg_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = make_engine(url)
        upgrade(engine)
        t0 = datetime(2026, 6, 1, tzinfo=timezone.utc)
        segs, gaps, outbox = [], [], []
        for i in range(a.rows):
            cam = f"cam-{i % 64:03d}"
            start = t0 + timedelta(minutes=i // 64)
            end = start + timedelta(seconds=60)
            sha = hashlib.sha256(str(i).encode()).hexdigest()
            row = dict(camera_id=cam, start_ms=int(start.timestamp() * 1000), end_ms=int(end.timestamp() * 1000),
                       media_duration_ms=60_000, key=segment_key(cam, start, 60_000), version_id=uuid.uuid4().hex,
                       size=30_000_000 + i, sha256=sha, retain_until_ms=int(end.timestamp() * 1000) + 190 * 86_400_000,
                       lock_mode="COMPLIANCE", codec="h264", audio_codec="aac", width=1920, height=1080, frames=1500,
                       session_id=uuid.uuid4().hex[:16], sequence=i // 64, recorder_id="recorder-01", status="stored",
                       verified_ms=None, lock_verified_ms=None, content_checked_ms=None, seal_seq=i // 3840)
            segs.append(row)
            outbox.append(dict(kind="segment", at_ms=row["end_ms"], body=json.dumps({"id": i + 1, **row})))
            if i % 50 == 0:
                gaps.append(dict(camera_id=cam, start_ms=row["start_ms"] - 4000, end_ms=row["start_ms"],
                                 reason="timeout", detail="RTSP 读超时 / RTSP read timed out after 10 s", seal_seq=None))
        with engine.begin() as c:
            c.execute(text("INSERT INTO segment (" + ",".join(segs[0]) + ") VALUES (" + ",".join(f":{k}" for k in segs[0]) + ")"), segs)
            c.execute(text("INSERT INTO gap (" + ",".join(gaps[0]) + ") VALUES (" + ",".join(f":{k}" for k in gaps[0]) + ")"), gaps)
            c.execute(text("INSERT INTO journal_outbox (kind, at_ms, body) VALUES (:kind, :at_ms, :body)"), outbox)
        raw = create_engine(url, isolation_level="AUTOCOMMIT")
        with raw.connect() as c:
            c.execute(text("VACUUM ANALYZE"))
            for t, n in (("segment", len(segs)), ("gap", len(gaps)), ("journal_outbox", len(outbox))):
                size = c.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar()
                heap = c.execute(text(f"SELECT pg_relation_size('{t}')")).scalar()
                print(f"{t:16s} rows {n:7d}  total {size / n:7.1f} B/row  (heap {heap / n:6.1f}, indexes+toast {(size - heap) / n:6.1f})")
            for t, n in (("segment", len(segs)), ("gap", len(gaps))):
                c.execute(text(f"CREATE TABLE {t}_p (LIKE {t} INCLUDING DEFAULTS) PARTITION BY RANGE (start_ms)"))
                for m in range(5, 9):
                    lo = int(datetime(2026, m, 1, tzinfo=timezone.utc).timestamp() * 1000)
                    hi = int(datetime(2026, m + 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
                    c.execute(text(f"CREATE TABLE {t}_p{m} PARTITION OF {t}_p FOR VALUES FROM ({lo}) TO ({hi})"))
                c.execute(text(f"INSERT INTO {t}_p SELECT * FROM {t}"))
                c.execute(text(f"ALTER TABLE {t}_p ADD PRIMARY KEY (id, start_ms)"))
                idx = c.execute(text("SELECT indexdef FROM pg_indexes WHERE tablename = :t AND indexname NOT LIKE '%pkey'"), {"t": t}).scalars().all()
                for d in idx:
                    d = d.replace(f" ON public.{t} ", f" ON public.{t}_p ").replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX p_").replace("CREATE INDEX ", "CREATE INDEX p_")
                    if "UNIQUE" in d and "start_ms" not in d:
                        d = d.replace(")", ", start_ms)", 1)
                    c.execute(text(d))
                cons = c.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype = 'u'"), {"t": t}).scalars().all()
                for d in cons:
                    c.execute(text(f"ALTER TABLE {t}_p ADD " + (d if "start_ms" in d else d.replace(")", ", start_ms)", 1))))
                c.execute(text(f"VACUUM ANALYZE {t}_p"))
                size = c.execute(text(f"SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = CAST('{t}_p' AS regclass)")).scalar()
                print(f"{t + ' partitioned':24s} total {int(size) / n:7.1f} B/row")
        raw.dispose()
        engine.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
