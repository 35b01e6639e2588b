"""deploy/: the systemd units verify, and ``serve`` speaks TLS and believes X-Forwarded-For only from its proxy."""

from __future__ import annotations

import configparser
import datetime as dt
import ipaddress
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import text

from api.doctor_host import port_status
from clitools import ROOT
from conftest import free_port
from index.db import make_engine, sqlite_url
from test_install import clean_env, init

UNITS = ROOT / "deploy" / "systemd"
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "User": "labwitness"}


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(path)
    return cp


@pytest.mark.parametrize("name", ["labwitness.service", "labwitness-store.service"])
def test_units_are_hardened(name):
    svc = _unit(UNITS / name)["Service"]
    for k, v in HARDENING.items():
        assert svc.get(k) == v, (name, k)
    assert int(svc["LimitNOFILE"]) >= 65536 and svc["Restart"] == "always"
    assert "/var/lib/labwitness" in svc["ReadWritePaths"]
    assert svc["Environment"] == "LABWITNESS_CONFIG=/etc/labwitness/labwitness.toml"
    if name == "labwitness.service":
        assert "/var/spool/labwitness" in svc["ReadWritePaths"] and svc["ExecStart"].endswith("labwitness serve")
    else:
        assert svc["ExecStart"].endswith("labwitness store")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (units linted above)")
def test_units_pass_systemd_analyze_verify(tmp_path):
    exe = Path(sys.executable).parent / "labwitness"
    for unit in UNITS.glob("*.service"):
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/labwitness/venv/bin/labwitness", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, sorted(tmp_path.glob("*.service")))],
                       capture_output=True, text=True, timeout=60)
    # a unit this systemd does not know a setting of says so on stderr ("Unknown key name ...")
    assert r.returncode == 0 and "Unknown" not in r.stderr and "Failed" not in r.stderr, r.stderr


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = tmp / "cert.pem", tmp / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


def _serve(cfg: Path, port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), *args],
                            env=clean_env(LABWITNESS_CONFIG=cfg, LABWITNESS_RETENTION_JOBS="false"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _get(url: str, ctx: ssl.SSLContext | None = None, headers: dict | None = None, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (ConnectionError, urllib.error.URLError) as e:
            if isinstance(getattr(e, "reason", None), ssl.SSLError) or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _failed_auth_actors(data: Path) -> list[str]:
    engine = make_engine(sqlite_url(data / "index.sqlite3"))
    with engine.connect() as c:
        rows = c.execute(text("SELECT actor FROM auditevent WHERE action = 'auth.failed' ORDER BY id")).all()
    engine.dispose()
    return [r[0] for r in rows]


def test_serve_https_and_forwarded_headers_only_from_the_proxy(tmp_path):
    assert init(tmp_path).returncode == 0
    cfg = tmp_path / "etc" / "labwitness.toml"
    crt, key = self_signed(tmp_path)
    forged = {"X-Forwarded-For": "203.0.113.7", "Authorization": "Bearer lw_" + "x" * 40}

    port = free_port()
    proc = _serve(cfg, port, "--ssl-certfile", str(crt), "--ssl-keyfile", str(key))
    try:
        ctx = ssl.create_default_context(cafile=str(crt))  # verified: the certificate we gave it
        assert _get(f"https://127.0.0.1:{port}/.well-known/labwitness-keys.json", ctx) == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain http on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/labwitness-keys.json", timeout=5).read()
        assert _get(f"https://127.0.0.1:{port}/api/v1/cameras", ctx, forged) == 401
    finally:
        _stop(proc)
    assert _failed_auth_actors(tmp_path / "data") == ["public@127.0.0.1"]  # the forged address was not believed

    port = free_port()  # the same request through a proxy on 127.0.0.1 that labwitness trusts
    proc = _serve(cfg, port, "--forwarded-allow-ips", "127.0.0.1")
    try:
        assert _get(f"http://127.0.0.1:{port}/api/v1/cameras", None, forged) == 401
        assert port_status("127.0.0.1", port, https=False) == ("ok", f"127.0.0.1:{port} in use by the running labwitness")
    finally:
        _stop(proc)
    assert _failed_auth_actors(tmp_path / "data") == ["public@127.0.0.1", "public@203.0.113.7"]


def test_port_held_by_another_program_is_an_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        level, msg = port_status("127.0.0.1", port, https=False)
    assert level == "error" and "held by another program" in msg
    assert port_status("127.0.0.1", port, https=False)[0] == "ok"  # closed: free again
