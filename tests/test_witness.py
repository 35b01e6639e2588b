"""Seals witnessed outside the box, on a second SeaweedFS (its own ports, credentials
and bucket with Object Lock): a delivery lands locked in COMPLIANCE until the footage
retention, byte-identical, and the witness refuses to delete it; with the witness down
nothing is lost: the deliveries wait with backoff, in order, the backlog and its age
show in health, and everything arrives once it is back.  Plus the outbox's rules and
the configuration (pure)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

import pytest
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention

from labwitness.clock import FakeClock, utc_ms
from labwitness.errors import ConfigError, ConflictError, ValidationError
from retention import witness
from retention.policy import RetentionPolicy
from retention.witness import REFUSED, UNAVAILABLE, RetryPolicy, WitnessDeliverer, WitnessFacts, WitnessOutbox
from retention.witness_adapters import S3Witness, WitnessContext, read_secret
from retention.witness_config import build_witnesses, check_specs
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed
from witnesstools import LabKey

#: the witness store is another administrative domain: its own credentials
W_ACCESS, W_SECRET = "witness-admin", "witness-secret-of-the-other-domain"


def _secret_files(tmp_path) -> tuple[str, str]:
    a, s = tmp_path / "witness-access", tmp_path / "witness-secret"
    for p, v in ((a, W_ACCESS), (s, W_SECRET)):
        p.write_text(v + "\n")
        os.chmod(p, 0o600)
    return str(a), str(s)


@pytest.fixture(scope="module")
def witness_sw(tmp_path_factory):
    sw = EmbeddedSeaweed(tmp_path_factory.mktemp("witness-sw"), W_ACCESS, W_SECRET, supervise=False).start()
    yield sw
    sw.stop()


def _witness(sw, tmp_path, clock, bucket="lab-seals") -> S3Witness:
    access, secret = _secret_files(tmp_path)
    ctx = WitnessContext(clock=clock, retain_until=RetentionPolicy(), sign=lambda b: "", sign_key_id=lambda: "")
    [w] = build_witnesses([{"kind": "s3", "name": "regional-bucket", "endpoint": sw.endpoint, "bucket": bucket,
                            "access_key_file": access, "secret_key_file": secret, "create_bucket": True}], ctx)
    return w


def _seal(lab: LabKey, hour: int) -> tuple[str, bytes, str]:
    body = json.dumps({"hour": f"2026-12-03T{hour:02d}", "root": f"{hour:064x}"}, indent=1).encode()
    return f"seal-20261203T{hour:02d}", body, lab.sign(body)


def test_delivery_lands_locked_byte_identical_and_undeletable(index, witness_sw, tmp_path):
    lab = LabKey()
    clock = FakeClock(datetime.now(timezone.utc))
    w = _witness(witness_sw, tmp_path, clock, bucket=f"seals-{uuid.uuid4().hex[:12]}")
    outbox = WitnessOutbox(index.engine, {w.name: w.kind}, clock)
    deliverer = WitnessDeliverer(outbox, [w], clock)
    doc_id, body, sig = _seal(lab, 5)
    outbox.enqueue(doc_id, body, sig, lab.key_id)
    outbox.enqueue(doc_id, body, sig, lab.key_id)  # again (a sealer after a crash): the same one delivery
    assert outbox.backlog()[w.name].pending == 1
    assert deliverer.run_once() == 1
    [row] = outbox.deliveries(doc_id)
    receipt = json.loads(row["receipt"])
    assert row["state"] == "delivered" and receipt["key"] == f"seals/{doc_id}.json"
    # read independently, with a raw client on the witness bucket
    client, bucket = w.store.client, w.store.bucket
    r = client.get_object_retention(bucket, receipt["key"], version_id=receipt["version_id"])
    assert r.mode == "COMPLIANCE" and r.retain_until_date >= RetentionPolicy()(clock.now()).replace(microsecond=0)
    got = client.get_object(bucket, receipt["key"], version_id=receipt["version_id"])
    assert got.read() == body
    got.release_conn()
    sig_obj = client.get_object(bucket, receipt["signature_key"])
    sig_doc = json.loads(sig_obj.read())
    sig_obj.release_conn()
    assert sig_doc["signature"] == sig and sig_doc["key_id"] == lab.key_id
    assert client.get_object_retention(bucket, receipt["signature_key"]).mode == "COMPLIANCE"
    # the witness itself refuses to delete or shorten it
    with pytest.raises(S3Error) as e:
        client.remove_object(bucket, receipt["key"], version_id=receipt["version_id"])
    assert e.value.code == "AccessDenied"
    with pytest.raises(S3Error):
        client.set_object_retention(bucket, receipt["key"], Retention(COMPLIANCE, datetime.now(timezone.utc)),
                                    version_id=receipt["version_id"])
    assert witness.held_by([w], doc_id, body) == {w.name: "held"}
    assert witness.held_by([w], doc_id, body + b" ") == {w.name: "different"}
    assert witness.held_by([w], "seal-20261203T04", body) == {w.name: "missing"}
    # delivering it again (a crash before the receipt was written) adds no version
    w.deliver(doc_id, body, sig, lab.key_id)
    assert len([v for v in w.store.list_versions(receipt["key"]) if v.key == receipt["key"]]) == 1
    # never replaced by other bytes under the same id
    with pytest.raises(ConflictError):
        outbox.enqueue(doc_id, body + b"\n", sig, lab.key_id)
    assert abs((w.server_time() - datetime.now(timezone.utc)).total_seconds()) < 5
    assert w.fetch("seal-never-sent") is None


def test_witness_down_nothing_lost_backoff_in_order_then_delivered(index, tmp_path_factory, tmp_path):
    """The witness store stops; three seals wait in the outbox, the head one retried with
    growing delays and the others not tried out of order; health shows the backlog and its
    age (info, then warning, then critical); back up, all three arrive, in order."""
    lab = LabKey()
    sw = EmbeddedSeaweed(tmp_path_factory.mktemp("witness-down"), W_ACCESS, W_SECRET, supervise=False).start()
    try:
        clock = FakeClock(datetime.now(timezone.utc))
        w = _witness(sw, tmp_path, clock)
        outbox = WitnessOutbox(index.engine, {w.name: w.kind}, clock)
        deliverer = WitnessDeliverer(outbox, [w], clock, policy=RetryPolicy(initial_s=5, cap_s=40))
        sw.pause()
        seals = [_seal(lab, h) for h in (1, 2, 3)]
        for s in seals:
            outbox.enqueue(*s, lab.key_id)
            clock.advance(3600)
        waits = []
        for _ in range(5):
            assert deliverer.run_once() == 0
            head = outbox.deliveries(seals[0][0])[0]
            assert head["state"] == "pending" and head["error_kind"] == UNAVAILABLE
            waits.append((head["next_try_ms"] - utc_ms(clock.now())) / 1000)
            clock.advance(waits[-1])
        assert waits == [5, 10, 20, 40, 40]  # exponential, capped
        assert all(outbox.deliveries(s[0])[0]["attempts"] == 0 for s in seals[1:])  # order kept, not hammered
        facts = witness.facts(outbox, utc_ms(clock.now()))
        assert facts[0].pending == 3 and facts[0].oldest_age_s > 3 * 3600
        assert "unreachable" in facts[0].last_error or "not answering" in facts[0].last_error.lower() \
            or "Connection refused" in facts[0].last_error
        assert [(p["level"], p["code"]) for p in witness.classify(facts)] == [("warning", "witness_behind")]
        clock.advance(4 * 3600)
        assert [p["level"] for p in witness.classify(witness.facts(outbox, utc_ms(clock.now())))] == ["critical"]
        sw.resume()
        clock.advance(60)
        assert deliverer.run_once() == 3
        delivered = [outbox.deliveries(s[0])[0] for s in seals]
        assert [d["state"] for d in delivered] == ["delivered"] * 3
        assert [d["delivered_ms"] for d in delivered] == sorted(d["delivered_ms"] for d in delivered)
        for (doc_id, body, _), d in zip(seals, delivered):
            assert w.fetch(doc_id) == body
            assert json.loads(d["receipt"])["sha256"]
        assert witness.classify(witness.facts(outbox, utc_ms(clock.now()))) == []
    finally:
        sw.stop()


def test_a_witness_added_later_gets_the_whole_history_in_order(index):
    clock = FakeClock(datetime(2026, 12, 3, tzinfo=timezone.utc))
    lab = LabKey()
    seals = [_seal(lab, h) for h in range(4)]
    for s in seals:
        WitnessOutbox(index.engine, {}, clock).enqueue(*s, lab.key_id)  # no witness configured yet: kept
    got: list[str] = []

    class Collecting:  # a plugged-in adapter: anything with the Witness shape
        name, kind = "late", "custom"

        def deliver(self, doc_id, body, signature, key_id):
            got.append(doc_id)
            return json.dumps({"ok": True})

    outbox = WitnessOutbox(index.engine, {"late": "custom"}, clock)
    assert WitnessDeliverer(outbox, [Collecting()], clock).run_once() == 4
    assert got == [s[0] for s in seals]
    assert outbox.owe_all() == 0


def test_the_same_seal_enqueued_at_once_from_many_threads_is_one_document_owed_once(index):
    import threading

    clock = FakeClock(datetime.now(timezone.utc))
    lab = LabKey()
    seal = _seal(lab, 6)
    outbox = WitnessOutbox(index.engine, {"a": "s3", "b": "https"}, clock)
    errors, go = [], threading.Barrier(6)

    def enqueue():
        go.wait()
        try:
            outbox.enqueue(*seal, lab.key_id)
        except Exception as e:  # noqa: BLE001 (any failure fails the test below)
            errors.append(e)

    threads = [threading.Thread(target=enqueue) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(d["witness"] for d in outbox.deliveries(seal[0])) == ["a", "b"]
    assert {n: b.pending for n, b in outbox.backlog().items()} == {"a": 1, "b": 1}


@pytest.mark.parametrize("doc_id", ["", "../x", "a/b", "a b", "x" * 201, ".hidden"])
def test_document_ids_stay_plain(index, doc_id):
    with pytest.raises(ValidationError):
        WitnessOutbox(index.engine, {}, FakeClock(datetime.now(timezone.utc))).enqueue(doc_id, b"{}", "s", "k")


# -- pure ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("failures,kind,delay", [
    (1, UNAVAILABLE, 5), (2, UNAVAILABLE, 10), (3, UNAVAILABLE, 20), (7, UNAVAILABLE, 300), (50, UNAVAILABLE, 300),
    (1, REFUSED, 3600), (9, REFUSED, 3600),
])
def test_retry_policy(failures, kind, delay):
    assert RetryPolicy().delay_s(failures, kind) == delay


def _f(pending=0, age=None, refused=0, kind="", error=""):
    return WitnessFacts("w", "s3", pending, age, refused, error, kind, None, 0)


@pytest.mark.parametrize("facts,expected", [
    (_f(), []),
    (_f(1, 60), []),  # a fresh seal on its way
    (_f(1, 60, kind=UNAVAILABLE, error="down"), [("info", "witness_retrying")]),
    (_f(2, 16 * 60, kind=UNAVAILABLE), [("warning", "witness_behind")]),
    (_f(2, 6 * 3600 + 1, kind=UNAVAILABLE), [("critical", "witness_behind")]),
    (_f(1, 60, refused=1, kind=REFUSED, error="400"), [("warning", "witness_refused")]),
    (_f(3, 7 * 3600, refused=1, kind=REFUSED), [("critical", "witness_behind"), ("warning", "witness_refused")]),
], ids=["nothing", "fresh", "retrying", "behind", "far-behind", "refused", "refused-and-behind"])
def test_classify(facts, expected):
    assert [(p["level"], p["code"]) for p in witness.classify([facts])] == expected


@pytest.mark.parametrize("specs,match", [
    ([{"kind": "ftp"}], "kind"),
    ([{"kind": "https"}], "missing url"),
    ([{"kind": "https", "url": "https://a"}, {"kind": "https", "url": "https://b"}], "named 'https'"),
    ([{"kind": "https", "url": "https://a", "token": "inline!"}], "file"),
    ([{"kind": "s3", "endpoint": "e", "bucket": "b", "access_key_file": "a", "secret_key_file": "s",
       "secret_key": "inline"}], "file"),
    ([{"kind": "https", "name": "Bad Name", "url": "https://a"}], "name"),
    (["https://a"], "table"),
])
def test_bad_witness_configuration_is_refused(specs, match):
    with pytest.raises(ConfigError, match=match):
        check_specs(specs)


def test_secret_files_must_be_private(tmp_path):
    p = tmp_path / "token"
    p.write_text("abc\n")
    os.chmod(p, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_secret(p, "t")
    os.chmod(p, 0o600)
    assert read_secret(p, "t") == "abc"
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(tmp_path / "missing", "t")


def test_witness_bucket_without_object_lock_is_refused(witness_sw, tmp_path):
    """A witness bucket that could forget the seal is refused (and shown), never used."""
    from labwitness.errors import WitnessRefusedError

    plain = S3ObjectStore(witness_sw.endpoint, W_ACCESS, W_SECRET, f"plain-{uuid.uuid4().hex[:12]}", allow_unenforced=True)
    plain.client.make_bucket(plain.bucket)  # no Object Lock
    clock = FakeClock(datetime.now(timezone.utc))
    w = S3Witness("plain", S3ObjectStore(witness_sw.endpoint, W_ACCESS, W_SECRET, plain.bucket),
                  WitnessContext(clock, RetentionPolicy(), lambda b: "", lambda: ""))
    with pytest.raises(WitnessRefusedError, match="Object Lock"):
        w.deliver("seal-x", b"{}", "s", "k")
