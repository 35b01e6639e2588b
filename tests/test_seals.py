"""Hourly seals on real components: SeaweedFS with Object Lock, PostgreSQL and SQLite.

What a seal holds and how seals chain; rows that reach the index late (a spool backlog, a
transaction that committed after a higher id was sealed) are sealed by the next seal; a storage
outage while sealing loses nothing; ``seal verify`` names a segment removed or altered behind
the S3 API, an audit rewrite, a deleted seal, an hour never sealed and footage in no seal."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from conftest import ACCESS, SECRET, make_store
from index.audit import AuditLog, event_hash
from index.models import AuditEvent, Gap, Seal, Segment
from labwitness.clock import FakeClock, SystemClock, utc_ms
from labwitness.errors import StorageUnavailableError
from retention import merkle, seal_doc
from retentiontools import Fixture
from rootattack import alter_version, patch_on_disk, remove_version
from sealtools import Sealer, dump, kinds

RECENT = timedelta(minutes=5)


def _audit(engine, n: int = 3) -> AuditLog:
    log = AuditLog(engine, lambda: utc_ms(SystemClock().now()))
    for i in range(n):
        log.append("admin", "camera.update", f"cam-{i}", {"i": i})
    return log


def test_a_seal_holds_every_new_segment_gap_and_the_audit_head_and_seals_chain(tmp_path, store, index):
    fx = Fixture(store, index, tmp_path)
    segs = [fx.put("cam-a", age=RECENT) for _ in range(3)] + [fx.put("cam-b", age=RECENT) for _ in range(2)]
    index.add_gap(Gap(camera_id="cam-b", start_ms=1000, end_ms=5000, reason="timeout"))
    audit = _audit(index.engine)
    s = Sealer(store, index.engine, tmp_path)
    res = s.seal()
    assert res.status == "ok" and res.summary["segments"] == 5 and res.summary["gaps"] == 1
    env = s.envelope(1)
    head = env["head"]
    assert seal_doc.check_envelope(env) == []
    assert head["seq"] == 1 and head["prev_seal_hash"] == seal_doc.GENESIS and head["key_id"] == s.key.fingerprint
    assert {c: v["leaves"] for c, v in head["cameras"].items()} == {"cam-a": 3, "cam-b": 2}
    # leaves in document order (row id) with the footage's own hash, size and times
    assert [leaf[0] for leaf in env["leaves"]["cam-a"]] == [x.key for x in segs[:3]]
    assert env["leaves"]["cam-b"][0] == [segs[3].key, segs[3].version_id, segs[3].sha256, segs[3].size,
                                         segs[3].start_ms, segs[3].end_ms]
    cam_a_root = merkle.root([seal_doc.leaf_hash(x) for x in env["leaves"]["cam-a"]]).hex()
    assert head["cameras"]["cam-a"]["root"] == cam_a_root
    assert head["gaps"] == [["cam-b", 1000, 5000, "timeout"]]
    assert head["audit_head"] == {"id": audit.head()[0], "hash": audit.head()[1]}
    # the stored object is locked like footage
    key = next(v.key for v in store.list_versions("seals/"))
    assert key.startswith("seals/") and key.endswith("-00000001.json")
    st, meta = store.stat(key)
    assert st.mode == "COMPLIANCE" and st.retain_until is not None
    with Session(index.engine) as db:
        row = db.get(Seal, 1)
        assert row.root == head["root"] and row.doc_hash == seal_doc.head_hash(head) and row.object_key == key
        assert {x.seal_seq for x in db.exec(select(Segment))} == {1}
    # the next seal takes only what is new, and names the first one's hash
    fx.put("cam-a", age=RECENT)
    res2 = s.seal()
    assert res2.summary["segments"] == 1 and res2.summary["gaps"] == 0
    head2 = s.envelope(2)["head"]
    assert head2["prev_seal_hash"] == seal_doc.head_hash(head)
    assert head2["period"]["start_ms"] == head["period"]["end_ms"]
    rep = s.verify()
    assert rep.ok, dump(rep)
    assert rep.segments_checked == 6 and [x["seq"] for x in rep.seals] == [1, 2]


def test_rows_that_reach_the_index_late_are_sealed_by_the_next_seal(tmp_path, store, index):
    fx = Fixture(store, index, tmp_path)
    late_meta, late_stored = fx.put("cam-a", age=timedelta(hours=30), indexed=False)  # waited in a spool backlog
    first = fx.put("cam-a", age=RECENT)
    # a row whose id was handed out before the sealed one's but that commits after the seal
    with index.engine.begin() as c:
        c.execute(update(Segment.__table__).where(Segment.__table__.c.id == first.id).values(id=1000))
    s = Sealer(store, index.engine, tmp_path)
    gap = index.add_gap(Gap(camera_id="cam-a", start_ms=10_000, end_ms=20_000, reason="timeout"))
    first_res = s.seal()
    assert (first_res.summary["segments"], first_res.summary["gaps"]) == (1, 1)
    from retention.rebuild import row_from_object
    row = row_from_object(late_meta, late_stored)
    row.id = 500
    index.add_segment(row)
    index.add_gap(Gap(camera_id="cam-a", start_ms=10_000, end_ms=30_000, reason="timeout"))  # the gap grew
    res = s.seal()
    assert res.summary["segments"] == 1 and res.summary["gaps"] == 1
    env = s.envelope(2)
    assert [leaf[0] for leaf in env["leaves"]["cam-a"]] == [late_meta.key]
    assert env["head"]["gaps"] == [["cam-a", 10_000, 30_000, "timeout"]]
    assert env["leaves"]["cam-a"][0][4] == utc_ms(late_meta.start)  # the leaf keeps the footage's own time
    with Session(index.engine) as db:
        assert {x.id: x.seal_seq for x in db.exec(select(Segment))} == {1000: 1, 500: 2}
        assert db.get(Gap, gap.id).seal_seq == 2
    assert s.verify().ok


def test_storage_down_while_sealing_loses_no_seal(tmp_path_factory, tmp_path):
    from index.db import make_engine, sqlite_url
    from index.migrate import upgrade
    from index.queries import IndexStore
    from storage.seaweed import EmbeddedSeaweed

    sw = EmbeddedSeaweed(tmp_path_factory.mktemp("sw-seal-outage"), ACCESS, SECRET).start()
    engine = make_engine(sqlite_url(tmp_path / "index.sqlite3"))
    try:
        upgrade(engine)
        store = make_store(sw)
        fx = Fixture(store, IndexStore(engine), tmp_path)
        for _ in range(3):
            fx.put("cam-a", age=RECENT)
        s = Sealer(store, engine, tmp_path)
        sw.pause()
        res = s.seal(upload=False)
        assert res.status == "ok" and res.summary["segments"] == 3  # sealed into the local spool
        with pytest.raises(StorageUnavailableError):
            s.spool.upload_once()
        assert s.spool.backlog()[0] == 1
        sw.resume()
        deadline = time.monotonic() + 60
        while True:
            try:
                assert s.spool.upload_once() == 1
                break
            except StorageUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert s.spool.backlog()[0] == 0
        env = s.envelope(1)
        assert env["head"]["leaves"] == 3 and seal_doc.check_envelope(env) == []
        assert s.verify().ok
    finally:
        engine.dispose()
        sw.stop()


def test_seal_verify_names_segments_removed_or_altered_behind_the_s3_api_and_an_audit_rewrite(
        tmp_path, seaweed, store, index):
    fx = Fixture(store, index, tmp_path)
    kept, removed, altered, patched = (fx.put("cam-a", age=RECENT, lock_s=None) for _ in range(4))
    audit = _audit(index.engine)
    s = Sealer(store, index.engine, tmp_path)
    s.seal()
    assert s.verify().ok
    # root on the box: the filer deletes the locked version, the volume server takes new bytes for
    # another's chunk, and a third is patched in the volume file on disk
    remove_version(seaweed, store.bucket, removed.key, removed.version_id)
    with store.open(altered.key, altered.version_id) as body:
        how = alter_version(seaweed, store.bucket, altered.key, altered.version_id, body.read())
    with store.open(patched.key, patched.version_id) as body:
        p_bytes = body.read()
    assert patch_on_disk(seaweed, p_bytes[:64], b"X" * 64) >= 1
    # whoever can write the database rewrites the audit chain consistently (it still verifies)
    with Session(index.engine) as db:
        evs = list(db.exec(select(AuditEvent).order_by(AuditEvent.id)))
        prev = evs[0].prev_hash
        for ev in evs:
            if ev.id == evs[1].id:
                ev.detail = '{"i": "rewritten"}'
            ev.prev_hash, ev.hash = prev, event_hash(prev, ev.at_ms, ev.actor, ev.role, ev.action, ev.target, ev.detail)
            prev = ev.hash
            db.add(ev)
        db.commit()
    assert audit.verify().ok  # the database alone cannot tell
    rep = s.verify()
    found = {(f["kind"], f.get("key")) for f in rep.findings}
    assert ("segment_missing", removed.key) in found, dump(rep)
    # chunk overwritten through the volume server: other bytes; patched on disk: the volume's CRC fails the read
    assert ("segment_altered" if how == "volume" else "segment_unreadable", altered.key) in found, dump(rep)
    assert any(k == patched.key and kind in ("segment_altered", "segment_unreadable") for kind, k in found), dump(rep)
    assert not any(k == kept.key for _kind, k in found)
    assert "audit_rewritten" in kinds(rep)


def test_seal_verify_names_a_deleted_seal_an_unsealed_hour_and_footage_in_no_seal(tmp_path, seaweed, store, index):
    fx = Fixture(store, index, tmp_path)
    fx.put("cam-a", age=RECENT)
    t0 = SystemClock().now() - timedelta(minutes=2)
    clock = FakeClock(t0)
    s = Sealer(store, index.engine, tmp_path, clock)
    s.seal()
    fx.put("cam-a", age=RECENT, indexed=False)  # stored, never indexed: no seal will hold it
    for hours in (1, 2, 5):  # hours 3 and 4 have no seal
        fx.put("cam-a", age=RECENT)
        clock.advance(3600 * hours - (utc_ms(clock.now()) - utc_ms(t0)) / 1000)
        s.seal()
    first = s.verify(now_ms=utc_ms(clock.now()) + 60_000)
    assert "hour_unsealed" in kinds(first) and "segment_unsealed" in kinds(first), dump(first)
    unsealed_hours = [f["hour"] for f in first.findings if f["kind"] == "hour_unsealed"]
    assert all(seal_doc.iso(utc_ms(t0) + 2 * 3_600_000) <= h <= seal_doc.iso(utc_ms(t0) + 5 * 3_600_000)
               for h in unsealed_hours), unsealed_hours
    # root removes seal 2 behind the S3 API: the chain shows it
    key2 = next(v for v in store.list_versions("seals/") if v.key.endswith("-00000002.json"))
    remove_version(seaweed, store.bucket, key2.key, key2.version_id)
    rep = s.verify(now_ms=utc_ms(clock.now()) + 60_000)
    assert any(f["kind"] == "seal_missing" and f.get("seq") == 2 for f in rep.findings), dump(rep)


def test_health_goes_critical_when_the_newest_seal_is_late_or_the_seal_job_failed(tmp_path, store, index):
    from index.coverage import CoverageStore
    from index.models import JobRun
    from retention.health import classify, gather

    fx = Fixture(store, index, tmp_path)
    fx.put("cam-a", age=RECENT)
    s = Sealer(store, index.engine, tmp_path)
    s.seal()

    def status(at_ms: int):
        facts = gather(index.engine, CoverageStore(index.engine, lambda: at_ms), at_ms, segment_seconds=10,
                       read_timeout_s=10, retention_days=190, retention_enforced=True, camera_ids=[],
                       seal_interval_h=1.0, seal_grace_min=15.0)
        return facts.seals.newest_seq, {p["code"]: p["level"] for p in classify(facts)[1]}

    now = utc_ms(SystemClock().now())
    seq, codes = status(now)
    assert seq == 1 and "seal_late" not in codes and "job_seal" not in codes
    assert status(now + 2 * 3_600_000 + 16 * 60_000)[1]["seal_late"] == "critical"
    with Session(index.engine) as db:  # the next run fails (e.g. the spool's disk): critical at once
        db.add(JobRun(job="seal", started_ms=now + 1, finished_ms=now + 2, status="failed", summary="{}"))
        db.commit()
    assert status(now + 3)[1]["job_seal"] == "critical"


def test_the_seal_commands_seal_then_name_a_segment_removed_behind_the_s3_api(tmp_path, seaweed):
    """``labwitness seal now`` and ``seal verify`` as a script runs them: 0, then 2 naming the segment."""
    from clitools import env_for, lw
    from index.db import make_engine, sqlite_url
    from index.migrate import upgrade
    from index.queries import IndexStore

    env = env_for(tmp_path, seaweed, bucket="seal-cli")
    store = make_store(seaweed, "seal-cli")
    (tmp_path / "data").mkdir(mode=0o700)
    engine = make_engine(sqlite_url(tmp_path / "data" / "index.sqlite3"))
    try:
        upgrade(engine)
        fx = Fixture(store, IndexStore(engine), tmp_path)
        segs = [fx.put("cam-a", age=RECENT, lock_s=None) for _ in range(3)]
    finally:
        engine.dispose()
    r = lw(["seal", "now", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["segments"] == 3
    r = lw(["seal", "verify", "--json"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["segments_checked"] == 3
    remove_version(seaweed, store.bucket, segs[1].key, segs[1].version_id)
    r = lw(["seal", "verify"], env)
    assert r.returncode == 2, r.stderr
    assert segs[1].key in r.stderr and "segment missing" in r.stderr and segs[0].key not in r.stderr


class _Outbox:
    """The witness outbox's interface (retention.seals.WitnessOutbox) kept in a list; ``down`` makes
    it refuse as the real one does when its database does not answer."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[bytes, str, str]] = {}
        self.down = False

    def enqueue(self, doc_id: str, body: bytes, signature: str, key_id: str) -> None:
        from labwitness.errors import IndexUnavailableError
        if self.down:
            raise IndexUnavailableError("outbox down")
        self.docs.setdefault(doc_id, (body, signature, key_id))


def test_each_seal_reaches_the_witness_outbox_even_after_a_failed_hand_over(tmp_path, store, index):
    from api.evidence import signature_ok

    fx = Fixture(store, index, tmp_path)
    fx.put("cam-a", age=RECENT)
    s = Sealer(store, index.engine, tmp_path)
    outbox = _Outbox()
    outbox.down = True
    res = s.seal(witness=outbox)
    assert res.status == "warning" and outbox.docs == {}  # the seal is stored; its hand-over is owed
    assert "outbox down" in res.summary["witness_error"]
    assert s.envelope(1)["head"]["seq"] == 1
    outbox.down = False
    fx.put("cam-a", age=RECENT)
    res = s.seal(witness=outbox)
    assert res.status == "ok" and res.summary["witness_queued"] == 2
    assert sorted(outbox.docs) == ["seal-00000001", "seal-00000002"]
    body, sig, key_id = outbox.docs["seal-00000002"]
    assert body == seal_doc.canonical(s.envelope(2)["head"]) and key_id == s.key.fingerprint
    assert signature_ok(s.key.public, body, sig)
    assert s.seal(witness=outbox).summary["witness_queued"] == 1  # only the new one


def test_an_index_without_seals_continues_the_chain_found_in_storage(tmp_path, store, index):
    """After the database is lost and the index rebuilt, the next seal does not start a second chain."""
    from sqlalchemy import delete

    fx = Fixture(store, index, tmp_path)
    fx.put("cam-a", age=RECENT)
    s = Sealer(store, index.engine, tmp_path)
    s.seal()
    fx.put("cam-a", age=RECENT)
    s.seal()
    with index.engine.begin() as c:  # what a rebuilt index looks like: rows unsealed, no seal table
        c.execute(delete(Seal.__table__))
        c.execute(update(Segment.__table__).values(seal_seq=None))
    res = s.seal(objects=store)
    assert res.summary["seals"][0]["seq"] == 3 and res.summary["segments"] == 2  # both sealed again
    assert s.envelope(3)["head"]["prev_seal_hash"] == seal_doc.head_hash(s.envelope(2)["head"])
    rep = s.verify()
    assert rep.ok, dump(rep)


def test_a_seal_reaches_an_s3_witness_through_the_real_outbox(tmp_path, seaweed, store, index):
    """Seal job -> retention.witness outbox -> deliverer -> a second locked bucket (the witness):
    the witness holds exactly the signed head, and its signature verifies with the lab key."""
    from api.evidence import signature_ok
    from retention.policy import RetentionPolicy
    from retention.witness import WitnessDeliverer, WitnessOutbox, held_by
    from retention.witness_adapters import S3Witness, WitnessContext

    fx = Fixture(store, index, tmp_path)
    fx.put("cam-a", age=RECENT)
    s = Sealer(store, index.engine, tmp_path)
    ctx = WitnessContext(clock=SystemClock(), retain_until=RetentionPolicy(), sign=s.key.sign,
                         sign_key_id=lambda: s.key.fingerprint)
    witness = S3Witness("archive", make_store(seaweed), ctx)  # another bucket with Object Lock
    outbox = WitnessOutbox(index.engine, {"archive": "s3"}, SystemClock())
    res = s.seal(witness=outbox)
    assert res.status == "ok" and res.summary["witness_queued"] == 1
    assert WitnessDeliverer(outbox, [witness], SystemClock()).run_once() == 1
    head = seal_doc.canonical(s.envelope(1)["head"])
    assert held_by([witness], "seal-00000001", head) == {"archive": "held"}
    delivered = outbox.deliveries("seal-00000001")
    assert [d["state"] for d in delivered] == ["delivered"]
    with witness.store.open("seals/seal-00000001.sig.json") as body:
        sig = json.loads(body.read())["signature"]
    assert signature_ok(s.key.public, head, sig)
