"""Evidence packages carry inclusion proofs against the hourly seals (real export: SeaweedFS,
recording camera, SQLite and PostgreSQL): verified offline, each file says sealed or not and by
which seal; a tampered proof or a seal signed by another key is not genuine; online, a witness
(a real HTTP server here) says whether it holds the seal."""

from __future__ import annotations

import base64
import json
import threading
import zipfile
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from api.evidence import MANIFEST, SIGNATURE, SigningKey, verify_package
from clitools import lw
from conftest import wait_for
from retention import seal_doc
from test_export_holds import _export, _ingest


def _package(client, rt, tmp_path: Path) -> tuple[Path, int]:
    now = datetime.now(timezone.utc)
    _ingest(client, rt, "REC-S", "JC-SEAL", now - timedelta(seconds=3), now)
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > now.timestamp() * 1000 + 500, 30,
             what="footage past the record's end")
    res = rt.run_seal(actor="test")
    sealed, seq = res.summary["segments"], res.summary["seals"][0]["seq"]  # the bucket may hold earlier tests' seals
    assert res.status == "ok" and sealed >= 3
    # footage indexed after the seal is in the window too: "not yet sealed"
    wait_for(lambda: len(list(rt.index.iter_segments("cam-api"))) > sealed + 1, 30, what="a segment after the seal")
    # health and metrics know the newest seal
    health = client.get("/api/v1/health").json()
    assert health["seals"]["newest_seq"] == seq and health["seals"]["age_s"] < 120
    assert not any(a["code"] in ("seal_late", "job_seal") for a in health["alerts"])
    metrics = client.get("/metrics").text
    assert "labwitness_seal_age_seconds " in metrics, metrics[-2000:]
    job = _export(client, "JC-SEAL")
    assert job["status"] == "done", job
    pkg = rt.exporter.get(job["id"])
    out = tmp_path / "pkg.zip"
    with rt.store.open(pkg.package_key, pkg.package_version_id) as body:
        out.write_bytes(body.read())
    return out, seq


def _rewrite(src: Path, dst: Path, key: SigningKey, change) -> Path:
    """The package with its parts changed by ``change(parts, manifest)`` and the manifest signed again by ``key``."""
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(parts[MANIFEST])
    change(parts, manifest)
    parts[MANIFEST] = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode()
    parts[SIGNATURE] = (key.sign(parts[MANIFEST]) + "\n").encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    return dst


class _Witness(BaseHTTPRequestHandler):
    held: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        doc = self.held.get(self.path.rsplit("/", 1)[-1])
        body = json.dumps({"document": base64.b64encode(doc).decode()}).encode() if doc else b'{"error": "not found"}'
        self.send_response(200 if doc else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def witness_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Witness)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/seals"
    srv.shutdown()
    srv.server_close()


def test_package_proofs_verify_offline_and_tampering_is_refused(running, tmp_path, witness_server):
    client, rt = running
    lab = rt.exporter.key
    (tmp_path / "lab.pub").write_bytes(lab.public_pem())
    path, seq = _package(client, rt, tmp_path)
    member = f"seals/{seq:08d}.json"
    rep = verify_package(path, lab.public_pem())
    assert rep.genuine, rep.problems
    assert rep.sealing["cam-api.mp4"]["status"] == "partly_sealed", rep.sealing
    assert [s["seq"] for s in rep.sealing["cam-api.mp4"]["seals"]] == [seq]
    manifest = rep.manifest
    states = [src["seal"]["status"] for src in manifest["files"][0]["sources"]]
    assert "sealed" in states and "not_yet_sealed" in states
    assert manifest["seals"][0]["member"] == member

    # online: the witness holds the seal (exactly the signed head the seal job handed out)
    srv, url = witness_server
    with zipfile.ZipFile(path) as z:
        head = json.loads(z.read(member))["head"]
    _Witness.held = {f"seal-{seq:08d}": seal_doc.canonical(head)}
    r = lw(["verify", str(path), "--public-key", str(tmp_path / "lab.pub"), "--witness", url, "--json"], {})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["genuine"] and out["witness"] == {str(seq): "held"} and out["sealing"]["cam-api.mp4"]["status"] == "partly_sealed"
    _Witness.held = {}
    r = lw(["verify", str(path), "--public-key", str(tmp_path / "lab.pub"), "--witness", url], {})
    assert r.returncode == 0 and "does not hold this seal" in r.stderr and "partly sealed" in r.stderr, r.stderr

    # a proof changed (and the manifest signed again, even with the lab's own key) does not verify
    def flip_proof(parts, m):
        src = next(s for s in m["files"][0]["sources"] if s["seal"]["status"] == "sealed")
        p = src["seal"]["path"] or src["seal"]["camera_path"]
        assert p, "a seal of one leaf has no path to flip"
        p[0] = ("0" if p[0][0] != "0" else "1") + p[0][1:]
    bad = verify_package(_rewrite(path, tmp_path / "flipped.zip", lab, flip_proof), lab.public_pem())
    assert not bad.genuine and bad.sealing["cam-api.mp4"]["status"] == "invalid"
    assert any("seal proof refused" in p for p in bad.problems), bad.problems

    # a seal re-signed by another key (the manifest pointing at it, signed with the lab key) is not the lab's
    other = SigningKey.load(tmp_path / "other")

    def other_seal(parts, m):
        env = json.loads(parts[member])
        env["head"]["key_id"] = env["key_id"] = other.fingerprint
        env["signature"] = other.sign(seal_doc.canonical(env["head"]))
        env["public_key_pem"] = other.public_pem().decode()
        parts[member] = seal_doc.canonical(env)
        h = seal_doc.head_hash(env["head"])
        m["seals"][0]["hash"] = h
        for src in m["files"][0]["sources"]:
            if src["seal"]["status"] == "sealed":
                src["seal"]["seal_hash"] = h
    forged = _rewrite(path, tmp_path / "other-key.zip", lab, other_seal)
    rep2 = verify_package(forged, lab.public_pem())
    assert rep2.ok and not rep2.genuine and other.fingerprint in rep2.seal_keys_pending
    r = lw(["verify", str(forged), "--public-key", str(tmp_path / "lab.pub")], {})
    assert r.returncode == 1 and "a seal is signed by another key" in r.stderr, r.stderr

    # a seal swapped for one whose signature is not by the key it names
    def swapped_signature(parts, m):
        env = json.loads(parts[member])
        env["signature"] = other.sign(seal_doc.canonical(env["head"]))
        parts[member] = seal_doc.canonical(env)
    rep3 = verify_package(_rewrite(path, tmp_path / "swapped.zip", lab, swapped_signature), lab.public_pem())
    assert not rep3.genuine and rep3.sealing["cam-api.mp4"]["status"] == "invalid", rep3.problems
