"""The witnesses wired into a running labwitness: configured in the settings (TOML
file or JSON in the environment, secrets by file), the deliverer thread of a recording
runtime sends an enqueued seal to a second SeaweedFS and to an HTTPS endpoint, and a
witness that stops answering shows in health and /metrics until it is back."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from prometheus_client import generate_latest

from fastapi.testclient import TestClient

from api.app import create_app
from api.evidence import SigningKey
from api.runtime import Runtime
from api.settings import load_settings
from labwitness.errors import ConfigError
from storage.seaweed import EmbeddedSeaweed
from conftest import ACCESS, SECRET, free_port, wait_for
from webtools import sign_in
from witnesstools import WitnessServer

W_ACCESS, W_SECRET = "witness-admin", "witness-secret-of-the-other-domain"
TOKEN = "platform-token-for-this-test-only"


def _file(path, value: str) -> str:
    path.write_text(value + "\n")
    os.chmod(path, 0o600)
    return str(path)


def test_witnesses_from_a_toml_file_and_from_json_in_the_environment(tmp_path, monkeypatch):
    token = _file(tmp_path / "token", TOKEN)
    cfg = tmp_path / "labwitness.toml"
    cfg.write_text(f"""
[[witnesses]]
kind = "https"
name = "platform"
url = "https://witness.example.gov.cn/seals"
token_file = "{token}"

[[witnesses]]
kind = "s3"
name = "other-domain"
endpoint = "https://s3.example.net"
bucket = "lab-seals"
access_key_file = "/etc/labwitness/witness-access"
secret_key_file = "/etc/labwitness/witness-secret"
""")
    monkeypatch.setenv("LABWITNESS_CONFIG", str(cfg))
    s = load_settings()
    assert [w["name"] for w in s.witnesses] == ["platform", "other-domain"]
    monkeypatch.setenv("LABWITNESS_WITNESSES", json.dumps([{"kind": "https", "url": "https://w.example/seals"}]))
    assert load_settings().witnesses == [{"kind": "https", "url": "https://w.example/seals"}]
    monkeypatch.setenv("LABWITNESS_WITNESSES", json.dumps([{"kind": "https", "url": "https://w", "token": "inline"}]))
    with pytest.raises(ConfigError, match="file"):
        load_settings()
    monkeypatch.delenv("LABWITNESS_WITNESSES")
    monkeypatch.delenv("LABWITNESS_CONFIG")
    assert load_settings().witnesses == []  # none by default


def test_runtime_delivers_to_both_witnesses_and_health_shows_a_witness_behind(tmp_path, tmp_path_factory, seaweed,
                                                                             db_url):
    data = tmp_path / "data"
    lab = SigningKey.load(data)  # the key the runtime will sign with, made before: the platform knows it
    server = WitnessServer(lab.public, TOKEN, tmp_path).start()
    wsw = EmbeddedSeaweed(tmp_path_factory.mktemp("witness-rt"), W_ACCESS, W_SECRET, supervise=False).start()
    try:
        witnesses = [
            {"kind": "s3", "name": "other-domain", "endpoint": wsw.endpoint, "bucket": f"seals-{uuid.uuid4().hex[:8]}",
             "access_key_file": _file(tmp_path / "wa", W_ACCESS), "secret_key_file": _file(tmp_path / "ws", W_SECRET),
             "create_bucket": True},
            {"kind": "https", "name": "platform", "url": server.url, "token_file": _file(tmp_path / "tok", TOKEN),
             "ca_file": str(server.cert)},
        ]
        settings = load_settings(
            data_dir=data, database_url=db_url, s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
            s3_secret_key=SECRET, s3_bucket=f"rt-{uuid.uuid4().hex[:8]}", retention_jobs=False,
            discovery_port=free_port(), discovery_interfaces="127.0.0.1", witnesses=witnesses,
            witness_retry_cap_s=2.0)
        with Runtime(settings) as rt:
            body = json.dumps({"hour": "2026-12-03T21", "root": "ab" * 32}).encode()
            rt.witness_outbox.enqueue("seal-20261203T21", body, lab.sign(body), lab.fingerprint)
            wait_for(lambda: all(d["state"] == "delivered" for d in rt.witness_outbox.deliveries("seal-20261203T21")),
                     30, what="both witnesses confirmed")
            assert server.docs["seal-20261203T21"]["key_id"] == lab.fingerprint
            rep = rt.health.report(refresh_coverage=False)
            assert {n: (w["pending"], w["delivered"]) for n, w in rep["witnesses"].items()} == {
                "other-domain": (0, 1), "platform": (0, 1)}
            assert not [a for a in rep["alerts"] if a["code"].startswith("witness")]

            server.unavailable = 10_000  # the platform goes into maintenance
            body2 = json.dumps({"hour": "2026-12-03T22", "root": "cd" * 32}).encode()
            rt.witness_outbox.enqueue("seal-20261203T22", body2, lab.sign(body2), lab.fingerprint)
            wait_for(lambda: rt.health.report(refresh_coverage=False)["witnesses"]["platform"]["last_error_kind"],
                     30, what="the platform's failure in health")
            rep = rt.health.report(refresh_coverage=False)
            platform = rep["witnesses"]["platform"]
            assert platform["pending"] == 1 and platform["oldest_age_s"] is not None and "503" in platform["last_error"]
            assert [a["code"] for a in rep["alerts"] if a["code"].startswith("witness")] == ["witness_retrying"]
            metrics = generate_latest(rt.metrics.registry).decode()
            assert 'labwitness_witness_backlog{witness="platform"} 1.0' in metrics
            assert 'labwitness_witness_backlog{witness="other-domain"} 0.0' in metrics
            assert "labwitness_witness_oldest_undelivered_age_seconds" in metrics
            # the same in the REST report and on the operations page
            app = create_app(settings, rt)
            with TestClient(app) as client:
                token = rt.tokens.create("ops", "operations", "test")[1]
                r = client.get("/api/v1/health/retention", headers={"Authorization": f"Bearer {token}"})
                assert r.json()["witnesses"]["platform"]["pending"] == 1
                page = sign_in(app, token).get("/ui/health").text
                assert "platform" in page and "503" in page

            server.unavailable = 0
            wait_for(lambda: rt.witness_outbox.backlog()["platform"].pending == 0, 30, what="platform back")
            assert sorted(server.docs) == ["seal-20261203T21", "seal-20261203T22"]
            assert sorted(s for s in server.statuses() if s != 503) == [201, 201]  # each exactly once
    finally:
        server.stop()
        wsw.stop()
