"""The HTTPS witness against a real local HTTPS server (tests/witnesstools.py) that
checks the token, the request signature, the idempotency key and the document: a
witness in maintenance (503) gets the document once it is back, exactly once; a
duplicate answered 409 counts as delivered, a different document under the id does
not; a permanent 400 is shown in health and does not hold back the next documents."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from labwitness.clock import FakeClock, utc_ms
from labwitness.errors import ConfigError, StorageUnavailableError, WitnessRefusedError
from retention import witness
from retention.policy import RetentionPolicy
from retention.witness import REFUSED, UNAVAILABLE, RetryPolicy, WitnessDeliverer, WitnessOutbox
from retention.witness_adapters import WitnessContext
from retention.witness_https import HttpsWitness, payload
from witnesstools import LabKey, WitnessServer

TOKEN = "platform-token-for-this-test-only"


@pytest.fixture
def lab():
    return LabKey()


@pytest.fixture
def server(tmp_path, lab):
    s = WitnessServer(lab.public, TOKEN, tmp_path).start()
    yield s
    s.stop()


def _ctx(clock, lab) -> WitnessContext:
    return WitnessContext(clock=clock, retain_until=RetentionPolicy(), sign=lab.sign, sign_key_id=lambda: lab.key_id)


def _setup(index, server, lab, **kw):
    clock = FakeClock(datetime.now(timezone.utc).replace(microsecond=0))
    w = HttpsWitness("platform", server.url, _ctx(clock, lab), token=TOKEN, ca_file=str(server.cert), **kw)
    outbox = WitnessOutbox(index.engine, {"platform": "https"}, clock)
    return clock, w, outbox, WitnessDeliverer(outbox, [w], clock, policy=RetryPolicy(initial_s=5, cap_s=60))


def _seal(lab, hour: int) -> tuple[str, bytes, str]:
    doc_id = f"seal-20261203T{hour:02d}"
    body = json.dumps({"hour": hour, "root": f"{hour:064x}"}).encode()
    return doc_id, body, lab.sign(body)


def test_503_then_200_is_delivered_exactly_once_with_backoff(index, server, lab):
    clock, w, outbox, d = _setup(index, server, lab)
    doc_id, body, sig = _seal(lab, 7)
    outbox.enqueue(doc_id, body, sig, lab.key_id)
    server.unavailable = 3
    waits = []
    for _ in range(3):
        assert d.run_once() == 0
        row = outbox.deliveries(doc_id)[0]
        assert row["state"] == "pending" and row["error_kind"] == UNAVAILABLE and "503" in row["last_error"]
        waits.append((row["next_try_ms"] - utc_ms(clock.now())) / 1000)
        assert d.run_once() == 0  # not due yet: nothing is sent
        clock.advance(waits[-1])
    assert waits == [5, 10, 20]  # exponential backoff
    assert server.statuses() == [503, 503, 503]
    assert d.run_once() == 1
    assert server.statuses() == [503, 503, 503, 201]
    row = outbox.deliveries(doc_id)[0]
    assert row["state"] == "delivered" and row["attempts"] == 4
    assert json.loads(json.loads(row["receipt"])["body"]) == {"id": doc_id, "accepted": True}
    assert d.run_once() == 0 and server.statuses() == [503, 503, 503, 201]  # once
    # the witness holds exactly the bytes and the seal's own signature
    assert w.fetch(doc_id) == body
    assert server.docs[doc_id]["signature"] == sig and server.docs[doc_id]["key_id"] == lab.key_id
    assert outbox.backlog()["platform"].pending == 0


def test_duplicate_answered_409_is_delivered_a_different_document_is_refused(index, server, lab):
    clock, w, outbox, d = _setup(index, server, lab)
    doc_id, body, sig = _seal(lab, 8)
    # the witness already has it: our first delivery's answer was lost on the way back
    w.deliver(doc_id, body, sig, lab.key_id)
    outbox.enqueue(doc_id, body, sig, lab.key_id)
    assert d.run_once() == 1
    assert server.statuses() == [201, 409]
    receipt = json.loads(outbox.deliveries(doc_id)[0]["receipt"])
    assert receipt["duplicate"] is True and receipt["status"] == 409
    # a different document under an id the witness holds: never "delivered"
    with pytest.raises(WitnessRefusedError, match="different document"):
        w.deliver(doc_id, body + b" ", lab.sign(body + b" "), lab.key_id)


def test_permanent_400_is_shown_in_health_and_later_documents_still_go(index, server, lab):
    clock, w, outbox, d = _setup(index, server, lab)
    first, second = _seal(lab, 9), _seal(lab, 10)
    server.reject.add(first[0])
    outbox.enqueue(*first, lab.key_id)
    clock.advance(60)
    outbox.enqueue(*second, lab.key_id)
    assert d.run_once() == 1  # the refused one is parked, the next one goes
    assert set(server.docs) == {second[0]}
    row = outbox.deliveries(first[0])[0]
    assert row["error_kind"] == REFUSED and "400" in row["last_error"]
    assert (row["next_try_ms"] - utc_ms(clock.now())) / 1000 == RetryPolicy().refused_s
    facts = witness.facts(outbox, utc_ms(clock.now()))
    assert facts[0].pending == 1 and facts[0].refused == 1
    problems = witness.classify(facts)
    assert [p["code"] for p in problems] == ["witness_refused"]
    assert problems[0]["level"] == "warning" and "schema not accepted" in problems[0]["text"]
    # still retried, slowly: once the platform accepts it, the next slow retry delivers it
    server.reject.clear()
    clock.advance(600)
    assert d.run_once() == 0
    clock.advance(RetryPolicy().refused_s)
    assert d.run_once() == 1
    assert set(server.docs) == {first[0], second[0]}
    assert witness.classify(witness.facts(outbox, utc_ms(clock.now()))) == []


def test_the_platform_checks_what_it_is_sent(index, server, lab):
    """The request is signed with the lab key over its exact bytes; a witness that
    trusts another key answers 401, a refusal; a wrong token too."""
    clock, w, outbox, d = _setup(index, server, lab)
    doc_id, body, sig = _seal(lab, 11)
    stranger = LabKey()
    forged = HttpsWitness("platform", server.url, _ctx(clock, stranger), token=TOKEN, ca_file=str(server.cert))
    with pytest.raises(WitnessRefusedError, match="401"):
        forged.deliver(doc_id, body, sig, lab.key_id)
    wrong_token = HttpsWitness("platform", server.url, _ctx(clock, lab), token="not-it", ca_file=str(server.cert))
    with pytest.raises(WitnessRefusedError, match="401"):
        wrong_token.deliver(doc_id, body, sig, lab.key_id)
    assert [why for _, _, why in server.answers] == ["request signature", "token"]
    assert server.docs == {}
    # the payload as documented (docs/witnesses.md)
    p = json.loads(payload(doc_id, body, sig, lab.key_id, clock.now()))
    assert set(p) == {"schema", "id", "media_type", "document", "document_sha256", "signature", "signature_algorithm",
                      "key_id", "sent_at"}
    # the witness's clock, for the sweep's time check
    assert abs((w.server_time() - datetime.now(timezone.utc)).total_seconds()) < 5


def test_tls_is_checked_and_a_dead_endpoint_is_unavailable(index, server, lab, tmp_path):
    clock = FakeClock(datetime.now(timezone.utc))
    # without the CA file the self-signed certificate is not trusted: not delivered (retried: it may be fixed)
    untrusting = HttpsWitness("platform", server.url, _ctx(clock, lab), token=TOKEN)
    doc_id, body, sig = _seal(lab, 12)
    with pytest.raises(StorageUnavailableError):
        untrusting.deliver(doc_id, body, sig, lab.key_id)
    port = server.httpd.server_address[1]
    server.stop()
    assert witness.held_by([untrusting], doc_id, body)["platform"].startswith("unreachable: ")
    dead = HttpsWitness("platform", f"https://127.0.0.1:{port}/seals", _ctx(clock, lab), token=TOKEN,
                        ca_file=str(server.cert), timeout_s=2)
    with pytest.raises(StorageUnavailableError, match="not answering"):
        dead.deliver(doc_id, body, sig, lab.key_id)
    assert server.docs == {}


@pytest.mark.parametrize("url", ["http://203.0.113.5/seals", "ftp://127.0.0.1/x", "seals"])
def test_plain_http_only_on_loopback(url, lab):
    with pytest.raises(ConfigError):
        HttpsWitness("p", url, _ctx(FakeClock(datetime.now(timezone.utc)), lab))
    HttpsWitness("p", "http://127.0.0.1:9/seals", _ctx(FakeClock(datetime.now(timezone.utc)), lab))


def test_age_of_a_backlog_goes_warning_then_critical(index, server, lab):
    clock, w, outbox, d = _setup(index, server, lab)
    outbox.enqueue(*_seal(lab, 13), lab.key_id)
    server.unavailable = 1000
    d.run_once()
    levels = []
    for minutes in (1, 20, 7 * 60):
        clock.advance(minutes * 60)
        facts = witness.facts(outbox, utc_ms(clock.now()))
        levels.append([(p["level"], p["code"]) for p in witness.classify(facts)])
    assert levels[0] == [("info", "witness_retrying")]
    assert levels[1] == [("warning", "witness_behind")]
    assert levels[2] == [("critical", "witness_behind")]
    assert facts[0].pending == 1 and facts[0].oldest_age_s > 6 * 3600 and "503" in facts[0].last_error
    assert server.docs == {} and timedelta(seconds=facts[0].oldest_age_s) > timedelta(hours=6)


def test_a_witness_clock_is_a_time_witness_for_the_sweep(server, lab):
    """Its Date catches a host clock a year ahead; on loopback it is not independent of this host."""
    from retention.time_witness import Absent, TimeReading
    from retention.witness import WitnessDateSource

    ahead = FakeClock(datetime.now(timezone.utc) + timedelta(days=365))
    w = HttpsWitness("platform", server.url, _ctx(ahead, lab), token=TOKEN, ca_file=str(server.cert))
    source = WitnessDateSource(w)
    r = source.read(ahead)
    assert isinstance(r, TimeReading) and r.source == "witness:platform"
    assert abs(r.offset_s + 365 * 86400) < 10 and r.independent is False  # 127.0.0.1: this host's clock
    elsewhere = WitnessDateSource(HttpsWitness("p", "https://witness.example.gov.cn/seals", _ctx(ahead, lab)))
    assert elsewhere.independent is True
    server.stop()
    assert isinstance(source.read(ahead), Absent)
