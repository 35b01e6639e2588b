"""The outbox (index.journal), the journaler's drain (retention.journal) and the keyed audit
chain (index.audit + the installation's key file), on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, select

from index.models import ExportPackage, Gap, JournalOutbox, Segment

ROOT = Path(__file__).resolve().parents[1]


def _outbox(engine) -> list[tuple[str, dict]]:
    with Session(engine) as s:
        return [(r.kind, json.loads(r.body)) for r in s.exec(select(JournalOutbox).order_by(JournalOutbox.id))]


def _segment(i: int, camera: str = "cam-a") -> Segment:
    return Segment(camera_id=camera, start_ms=i * 1000, end_ms=i * 1000 + 1000, media_duration_ms=1000,
                   key=f"v1/{camera}/{i}.mp4", version_id=f"v{i}", size=10, sha256="0" * 64)


def test_outbox_entry_commits_with_its_change_and_only_then(index):
    engine = index.engine
    seg = index.add_segment(_segment(1))
    index.add_gap(Gap(camera_id="cam-a", start_ms=5000, end_ms=6000, reason="timeout", detail="d"))
    index.add_gap(Gap(camera_id="cam-a", start_ms=5000, end_ms=9000, reason="timeout", detail="d2"))  # grows
    index.add_gap(Gap(camera_id="cam-a", start_ms=5000, end_ms=8000, reason="timeout", detail="d3"))  # no change
    with Session(engine) as s:  # a change rolled back leaves no entry
        s.add(_segment(2))
        s.flush()
        s.rollback()
    got = _outbox(engine)
    assert [k for k, _ in got] == ["segment", "gap", "gap"]
    assert got[0][1]["id"] == seg.id and got[0][1]["key"] == seg.key and got[0][1]["sha256"] == "0" * 64
    assert got[1][1]["end_ms"] == 6000 and got[2][1]["end_ms"] == 9000 and got[1][1]["id"] == got[2][1]["id"]


def test_export_heartbeat_is_not_journaled_but_its_outcome_is(index):
    from index.exports import ExportStore

    store = ExportStore(index.engine, lambda: 1000)
    seg = index.add_segment(_segment(1))
    pkg = ExportPackage(id="pkg-1", report_no="R", created_ms=1, actor="a")
    store.save(pkg)
    for p in (0.2, 0.5):
        pkg.progress = p
        store.save(pkg)  # heartbeat: progress and updated_ms only
    store.add_pending_holds("pkg-1", [seg.id])
    store.confirm_holds("pkg-1")
    pkg.status, pkg.manifest, pkg.signature, pkg.progress = "done", '{"m":1}', "c2ln", 1.0
    store.save(pkg)
    hold = store.unreleased_holds("pkg-1")[0]
    store.mark_released(hold.hold_id, "admin")
    got = _outbox(index.engine)
    kinds = [k for k, _ in got if k != "segment"]
    assert kinds == ["export_package", "hold", "hold", "export_package", "hold"]
    holds = [b for k, b in got if k == "hold"]
    assert [h["state"] for h in holds] == ["pending", "placed", "placed"] and holds[-1]["released_by"] == "admin"
    assert all(h["segment_key"] == seg.key and h["segment_version_id"] == seg.version_id for h in holds)
    done = [b for k, b in got if k == "export_package"][-1]
    assert done["status"] == "done" and done["signature"] == "c2ln" and done["manifest"] == '{"m":1}'


def test_no_credential_reaches_the_outbox(index, tmp_path):
    """Cameras with a password and URL query secrets, changed and removed: the outbox holds
    their revisions, never a password, a query secret or their ciphertexts."""
    from api.camera_rows import new_camera
    from api.secrets import CredentialCipher
    from index.audit import AuditLog
    from index.registry import Registry
    from index.tokens import TokenStore

    cipher = CredentialCipher.from_settings(None, tmp_path)
    reg = Registry(index.engine, lambda: 1000)
    cam = new_camera(cipher, 1, "cam-s", "rtsp://admin:pw-Secret-1@127.0.0.1:554/s?user=u&password=qs-Secret-2")
    reg.add_camera(cam, "admin")
    reg.update_camera("cam-s", {"password_enc": cipher.encrypt("pw-Secret-3"), "name": "x"}, "admin")
    reg.remove_camera("cam-s", "admin")
    _, token = TokenStore(index.engine, lambda: 1).create("t", "admin", "test")
    AuditLog(index.engine, lambda: 1, b"k" * 32).append("admin", "camera.update", "cam-s",
                                                          {"url": "rtsp://a:pw-Secret-4@h/x"})
    with Session(index.engine) as s:
        raw = "\n".join(r.body for r in s.exec(select(JournalOutbox)))
        token_hash = s.exec(text("SELECT token_hash FROM apitoken")).one()[0]
    assert raw.count('"entity": "camera"') == 3
    for secret in ("pw-Secret-1", "qs-Secret-2", "pw-Secret-3", "pw-Secret-4", cam.password_enc, cam.url_secrets_enc,
                   token, token_hash):
        assert secret not in raw


def test_only_one_process_drains_and_a_batch_is_deleted_only_after_it_is_durable(index, tmp_path, store):
    from index.joblock import job_lock
    from labwitness.clock import SystemClock
    from retention.journal import LOCK, Journaler, decode_batch
    from retention.policy import RetentionPolicy
    from storage.doc_spool import DocumentSpool

    for i in range(7):
        index.add_segment(_segment(i))
    spool = DocumentSpool(tmp_path / "docs", store, RetentionPolicy(), SystemClock())
    j = Journaler(index.engine, spool, SystemClock(), "rec-1", batch=3)
    with job_lock(index.engine, LOCK):  # serve is draining: a CLI's journaler leaves it alone
        assert j.run_once() == 0
    assert len(_outbox(index.engine)) == 7
    assert j.run_once() == 7 and j.objects_written == 3 and _outbox(index.engine) == []
    assert spool.upload_once() == 3
    keys = sorted(v.key for v in store.list_versions("journal/"))
    assert len(keys) == 3 and all(re.fullmatch(r"journal/\d{4}/\d\d/\d\d/\d\d/\d{8}T\d{9}Z-rec-1-\d{12}-\d{12}\.jsonl\.gz", k)
                                  for k in keys)
    entries = [e for k in keys for e in decode_batch(store.open(k).read())]
    assert [e["body"]["version_id"] for e in entries] == [f"v{i}" for i in range(7)]

    # the sweep deletes v3 (journaled in its transaction); a rebuild into a new index drops it
    from index.db import make_engine, sqlite_url
    from index.journal import journal_rows
    from index.migrate import upgrade
    from retention.rebuild import run_rebuild

    with index.engine.begin() as c:
        journal_rows(c, "segment_deleted", [{"id": 4, "camera_id": "cam-a", "key": "v1/cam-a/3.mp4", "version_id": "v3"}])
    assert j.run_once() == 1 and spool.upload_once() == 1
    fresh = make_engine(sqlite_url(tmp_path / "rebuilt.sqlite3"))
    upgrade(fresh)
    res = run_rebuild(store, fresh, SystemClock(), actor="test")
    assert res.status == "ok" and res.summary["journal_entries"] == {"segment": 7, "segment_deleted": 1}
    with Session(fresh) as s:
        assert sorted(x.version_id for x in s.exec(select(Segment))) == [f"v{i}" for i in range(7) if i != 3]
    fresh.dispose()


def _lw(args: list[str], data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABWITNESS_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    env.pop("LABWITNESS_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_a_consistent_rewrite_of_the_audit_chain_is_caught_by_its_key(tmp_path):
    """sha256 alone can be recomputed by whoever writes the database; the MAC cannot
    without the key file.  Events from before the key existed are unkeyed, not failures."""
    from api.secrets import AUDIT_KEY_FILE, audit_key
    from index.audit import GENESIS, AuditLog, event_hash
    from index.db import make_engine, sqlite_url
    from index.migrate import upgrade
    from index.models import AuditEvent

    data = tmp_path / "data"
    engine = make_engine(sqlite_url(data / "index.sqlite3"))
    upgrade(engine)
    old = AuditLog(engine, lambda: 1000)  # an installation from before the key
    old.append("admin", "camera.create", "cam-1")
    old.append("admin", "camera.update", "cam-1")
    key = audit_key(data)
    assert (data / AUDIT_KEY_FILE).stat().st_mode & 0o777 == 0o600 and audit_key(data) == key
    keyed = AuditLog(engine, lambda: 2000, key)
    for i in range(3):
        keyed.append("inspector", "report.footage", f"JC-{i}")
    rep = keyed.verify()
    assert rep.ok and rep.events == 5 and rep.unkeyed == 2
    ok = _lw(["audit", "verify"], data)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 条事件早于审计密钥" in ok.stderr  # the CLI's messages go to stderr

    # whoever can write the database rewrites one event and recomputes the whole chain
    with Session(engine) as s:
        rows = list(s.exec(select(AuditEvent).order_by(AuditEvent.id)))
        prev = GENESIS
        for ev in rows:
            if ev.target == "JC-1":
                ev.target = "JC-999"
            ev.prev_hash = prev
            ev.hash = event_hash(prev, ev.at_ms, ev.actor, ev.role, ev.action, ev.target, ev.detail)
            prev = ev.hash
            s.add(ev)
        s.commit()
    assert AuditLog(engine, lambda: 1).verify().ok  # the unkeyed chain alone is fooled
    rep = keyed.verify()
    assert not rep.ok and "MAC" in rep.reason
    bad = _lw(["audit", "verify"], data)
    assert bad.returncode != 0 and "MAC" in bad.stderr, bad.stdout + bad.stderr
    engine.dispose()


CORE_WRITERS = {  # module -> what its Core (non-ORM) writes touch; none is a journaled change
    "index/coverage.py": "coverage_day and index_meta (caches)",
    "index/coverage_locks.py": "coverage_day rows a lock verification changes (a cache)",
    "index/journal.py": "journal_outbox itself",
    "index/restore.py": "the rebuild's restore (journaled already)",
    "retention/journal.py": "journal_outbox (drained)",
    "retention/rebuild.py": "segment rows whose version the sweep deleted",
    "retention/content_index.py": "segment.content_checked_ms (job mark)",
    "retention/runs.py": "segment.verified_ms / lock_verified_ms (job marks)",
    "retention/sweep.py": "segment.status, and the swept rows (journaled there: segment_deleted)",
    "index/seals.py": "the seal table and segment/gap.seal_seq (seal bookkeeping; the seals are locked objects)",
    "index/witness_outbox.py": "the witness outbox (deliveries of seals)",
    "index/leases.py": "cluster_node and camera_lease (coordination of nodes, not evidence)",
    "index/exports.py": "export queue claims, heartbeats and results (journaled there: journal_rows, but heartbeats)",
    "index/web_sessions.py": "web_session (sign-in sessions: not evidence, not journaled)",
    "index/segment_runs.py": "segment_run, segment_run_dirty and segment_hour (derived from segment; the triggers keep them)",
    "index/partitions.py": "moves rows of a month out of the default partition into its own, same rows and ids (not a change)",
}


def test_writes_to_journaled_tables_go_through_orm_sessions():
    """A Core insert/update/delete bypasses the outbox: every module doing one is listed
    above with what it writes, so a new one has to be looked at."""
    pattern = re.compile(r"(?<![.\w])(insert|update|delete)\([A-Za-z_]|\.(update|delete)\(\)\.|INSERT |UPDATE |DELETE FROM ")
    found = set()
    for pkg in ("index", "retention", "recorder", "api", "labwitness"):
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" in rel:
                continue
            for line in path.read_text().splitlines():
                code = line.split("#")[0]
                if pattern.search(code) and not re.search(r"\b(s|session)\.delete\(|router\.delete\(", code):
                    found.add(rel)
    assert found == set(CORE_WRITERS), found ^ set(CORE_WRITERS)
