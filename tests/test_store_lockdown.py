"""The embedded store refuses every way around Object Lock (issue 14 §1).

The store is started the way the service starts it (``EmbeddedSeaweed`` with its own generated
credentials, the bucket made by ``S3ObjectStore.check()``) and a segment is stored locked in
COMPLIANCE mode through the service's client.  Then a local process *without the service's
secrets* -- plain ``http.client`` and sockets, and weed's own client tools run from a directory
without ``security.toml`` -- tries every attack that worked against the old configuration (issue
14: filer delete, overwrite and listing; volume delete; master collection delete; S3 with the
default credentials), on every TCP port and Unix socket the weed process listens on.  Each must be
refused, and afterwards the footage still downloads byte-identical and its chunk is intact.

Against the configuration before this change (no security.toml, HTTP APIs open, gRPC plain, S3
credentials from the environment) the table fails: 67 of 687 attacks succeed -- plain gRPC on every
port and socket, filer listing, reads, overwrites and deletes, volume overwrite and delete, the
master's lookup, assign, grow, submit and collection delete -- and the footage is gone.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error

from storage.s3 import S3ObjectStore
from storage.seaweed import GRPC_OFFSET, EmbeddedSeaweed
from weed_attacks import (BUCKET, FAMILIES, KNOWN_CREDENTIALS, Target, Weed, chunk_bytes, chunk_fids,
                          footage_damage, listening, store_segment)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """The embedded store started as the service starts it, holding one locked segment."""
    d = tmp_path_factory.mktemp("lockdown")
    sw = EmbeddedSeaweed(d / "seaweedfs", supervise=False).start()  # no credentials given: its own
    try:
        store = S3ObjectStore(sw.endpoint, sw.access_key, sw.secret_key, BUCKET)
        assert store.check().retention_enforced
        stored, data = store_segment(store, d, "cam-lock")
        assert stored.mode == "COMPLIANCE"
        fids = chunk_fids(Weed.embedded(sw), stored.key, stored.version_id)
        assert len(fids) == 1, fids  # one chunk: 700 kB is below weed's chunk size
        assert chunk_bytes(Weed.embedded(sw), fids[0]) == (200, data)
        yield sw, store, stored, Target(stored.key, stored.version_id, fids[0], data), d
    finally:
        sw.stop()


@pytest.mark.slow
def test_every_attack_on_every_port_is_refused_and_the_footage_survives(locked):
    sw, store, stored, t, d = locked
    w = Weed.embedded(sw)
    ports, sockets = listening(sw.proc.pid)
    http_ports = set(sw.ports.values())
    grpc_ports = {p + GRPC_OFFSET for p in http_ports}
    # every port weed opened is one it was given (nothing unexpected to attack), all on loopback
    assert http_ports <= ports and ports <= http_ports | grpc_ports, (ports, sw.ports)
    assert len(sockets) >= 5, sockets  # the gRPC sockets in /tmp, the filer's and S3's local sockets
    targets: list[int | str] = sorted(ports) + sorted(sockets)
    attacker = d / "attacker"
    attacker.mkdir()
    failures: list[str] = []
    tried = 0
    # status pages, gRPC, the HTTP attacks of issue 14, weed's own tools and S3 (tests/weed_attacks.py)
    for family in FAMILIES.values():
        n, failed = family(targets, t, w, attacker)
        tried, failures = tried + n, failures + failed
    survived = footage_damage(w, store, stored, t)
    assert not failures and not survived, (f"{len(failures)} of {tried} attacks not refused:\n  " + "\n  ".join(failures)
                                           + "\nfootage afterwards: " + ("; ".join(survived) or "intact"))


def test_secrets_are_the_services_alone_and_survive_a_restart(locked):
    sw, store, stored, t, d = locked
    sd = sw.data_dir
    for sub in ("", "tls", "data"):
        assert ((sd / sub).stat().st_mode & 0o777) == 0o700, sub
    for f in ("security.toml", "s3-identity.json", "tls/ca.crt", "tls/node.crt", "tls/node.key"):
        assert ((sd / f).stat().st_mode & 0o777) == 0o600, f
    assert not (sd / "tls" / "ca.key").exists()  # no one can sign another certificate
    conf = tomllib.loads((sd / "security.toml").read_text())
    keys = [conf["jwt"]["signing"]["key"], conf["jwt"]["signing"]["read"]["key"], conf["jwt"]["filer_signing"]["key"],
            conf["jwt"]["filer_signing"]["read"]["key"]]
    assert len(set(keys)) == 4 and all(len(k) >= 48 for k in keys)
    # weed's gRPC Unix sockets in /tmp are the service user's alone
    _, sockets = listening(sw.proc.pid)
    for path in sockets:
        assert (os.stat(path).st_mode & 0o077) == 0, path
    # ... and another local user (postgres, which the test box has) can neither connect nor read the keys
    probe = ("import socket,sys\nfor p in sys.argv[1:]:\n    s=socket.socket(socket.AF_UNIX)\n    try:\n"
             "        s.connect(p) if p.endswith('.sock') else open(p).read()\n        print('OPEN', p)\n"
             "    except PermissionError:\n        print('EACCES', p)\n")
    tmp_socks = sorted(p for p in sockets if p.startswith("/tmp/"))
    out = subprocess.run(["runuser", "-u", "postgres", "--", "python3", "-c", probe, *tmp_socks,
                          str(sd / "security.toml"), str(sd / "s3-identity.json")],
                         capture_output=True, text=True, timeout=30)
    lines = out.stdout.split("\n")
    assert len(tmp_socks) >= 5 and sum(ln.startswith("EACCES") for ln in lines) == len(tmp_socks) + 2, out
    # a second store directory gets other keys: nothing is shared between installations
    from storage.seaweed_secrets import ensure_credentials, ensure_security

    other = d / "other-install"
    assert ensure_credentials(other) != sw.credentials
    ensure_security(other)
    assert (other / "security.toml").read_text() != (sd / "security.toml").read_text()
    # a restart on the same directory reuses ports, keys and credentials; the footage is still there
    before = (sw.credentials, dict(sw.ports), (sd / "security.toml").read_text())
    sw.pause()
    sw.resume()
    assert (sw.credentials, sw.ports, (sd / "security.toml").read_text()) == before
    assert store.open(t.key, t.version_id).read() == t.data


def test_no_default_credential_left_in_code_or_docs():
    """The old defaults are gone from everything but this test's list of what to try."""
    me = {Path(__file__).resolve(), ROOT / "tests" / "weed_attacks.py"}
    needles = [sk for _, sk in KNOWN_CREDENTIALS[:3]]
    hits = []
    for pattern in ("**/*.py", "**/*.md", "**/*.toml", "**/*.sh", "**/*.yml", "**/*.yaml", "**/*.json"):
        for p in ROOT.glob(pattern):
            if p in me or any(part.startswith(".") or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts):
                continue
            text = p.read_text(encoding="utf-8", errors="replace")
            hits += [f"{p.relative_to(ROOT)}: {n}" for n in needles if n in text]
    assert not hits, hits


@pytest.mark.parametrize("profile, protects, not_against", [
    ("embedded", ["every API of the store but S3", "every local user but root", "own credentials"], ["root on this box"]),
    ("external", ["root included", "another administrative domain"], ["external store's own administrators"]),
])
def test_each_profile_says_what_it_protects_against(profile, protects, not_against):
    from storage.protection import storage_protection

    p = storage_protection(profile)
    assert p["profile"] == profile
    yes, no = " ".join(p["protects_against"]), " ".join(p["does_not_protect_against"])
    assert all(s in yes for s in protects) and all(s in no for s in not_against), p
    assert all(" / " in line for line in [*p["protects_against"], *p["does_not_protect_against"]])  # zh / en


def test_the_service_runs_the_store_on_its_own_credentials_and_health_names_the_profile(tmp_path, caplog):
    """The embedded profile: no keys configured, none in code; those given anyway are ignored."""
    from api.runtime import Runtime
    from api.settings import load_settings
    from storage.seaweed_secrets import read_credentials

    s = load_settings(data_dir=tmp_path / "data", retention_jobs=False, s3_access_key="labwitness",
                      s3_secret_key="labwitness-secret-key")
    with Runtime(s, recording=False) as rt:
        cred = read_credentials(tmp_path / "data" / "seaweedfs")
        assert cred is not None and rt.seaweed is not None and rt.seaweed.credentials == cred
        assert cred.access_key != "labwitness" and len(cred.secret_key) >= 40
        assert "are ignored" in caplog.text
        assert rt.store.check().retention_enforced
        rep = rt.health.report()
        assert rep["storage_protection"]["profile"] == "embedded"
        assert "root" in " ".join(rep["storage_protection"]["does_not_protect_against"])
        c = Minio(rt.seaweed.endpoint.removeprefix("http://"), access_key="labwitness",
                  secret_key="labwitness-secret-key", secure=False)
        with pytest.raises(S3Error):
            c.list_buckets()
