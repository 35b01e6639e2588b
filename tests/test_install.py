"""``labwitness init`` and ``labwitness doctor`` on real stores and databases (issue 16 §1).

init writes an installation once and keeps it on every later run; doctor says 0 for a good
one and names what is broken -- a stopped store, a wrong key, a bucket without Object Lock,
a database behind on migrations, an unreachable camera -- with exit 1 (warnings) or 2 (errors).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from api.doctor import Doctor, exit_code, Finding
from api.doctor_host import parse_chronyc_tracking, parse_timedatectl_show, rtsp_options
from api.settings import load_settings
from clitools import ROOT, lw
from conftest import ACCESS, SECRET, free_port
from index.db import make_engine
from index.migrate import upgrade
from index.models import Camera
from index.registry import Registry
from api.runtime import Runtime
from labwitness.errors import StorageUnavailableError
from storage.seaweed import EmbeddedSeaweed

KEYS = ("credentials.key", "signing.key", "audit-mac.key", "seaweedfs/s3-identity.json", "seaweedfs/security.toml")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABWITNESS_")}
    env["PYTHONPATH"] = str(ROOT)
    env["LABWITNESS_CONFIG"] = ""  # never the host's /etc/labwitness
    env.update({k: str(v) for k, v in extra.items()})
    return env


def init(tmp: Path, *extra: str, **env) -> subprocess.CompletedProcess:
    return lw(["init", "--config", str(tmp / "etc" / "labwitness.toml"), "--data-dir", str(tmp / "data"),
               "--log-dir", str(tmp / "log"), *extra], clean_env(**env))


def doctor(tmp: Path, *extra: str, **env) -> tuple[int, dict]:
    r = lw(["doctor", "--json", "--skip", "clock", *extra],
           clean_env(LABWITNESS_CONFIG=tmp / "etc" / "labwitness.toml", LABWITNESS_PORT=free_port(), **env))
    return r.returncode, json.loads(r.stdout)


def by_check(doc: dict) -> dict:
    return {c["check"]: c for c in doc["checks"]}


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_init_writes_once_keeps_after_and_doctor_says_ok(tmp_path, db_url):
    extra = ["--database-url", db_url] if db_url.startswith("postgresql") else []
    first = init(tmp_path, *extra)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert token.startswith("lw_") and len(token) > 40 and "\n" not in token, first.stdout
    assert "created" in first.stderr
    data = tmp_path / "data"
    for d in (data, data / "spool", tmp_path / "log"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for k in KEYS:
        assert stat.S_IMODE((data / k).stat().st_mode) == 0o600, k
    cfg = (tmp_path / "etc" / "labwitness.toml").read_text()
    assert f'data_dir = "{data}"' in cfg
    # the plain token is nowhere on disk, and no key is in the config file
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_socket():
            blob = p.read_bytes()
            assert token.encode() not in blob, p
            assert hashlib.sha256(token.encode()).hexdigest().encode() not in blob or p.name.startswith("index"), p
    for k in ("credentials.key", "audit-mac.key"):
        assert (data / k).read_text().strip() not in cfg
    before = {k: digest(data / k) for k in KEYS} | {"config": digest(tmp_path / "etc" / "labwitness.toml")}

    again = init(tmp_path, *extra)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == ""  # no second token
    assert "created" not in again.stderr and again.stderr.count("kept") >= 10, again.stderr
    assert {k: digest(data / k) for k in KEYS} | {"config": digest(tmp_path / "etc" / "labwitness.toml")} == before

    code, doc = doctor(tmp_path)
    assert code == 0, doc
    checks = by_check(doc)
    assert checks["storage"]["level"] == "ok" and "delete and shorten refused" in checks["storage"]["message"]
    assert checks["database"]["level"] == "ok" and checks["files"]["level"] == "ok"
    assert checks["clock"]["message"].startswith("skipped")


def test_init_gives_what_it_creates_to_the_service_user(tmp_path):
    r = init(tmp_path, "--user", "nobody")
    assert r.returncode == 0, r.stderr
    nobody = 65534
    for p in (tmp_path / "data", tmp_path / "data" / "spool", tmp_path / "log", tmp_path / "data" / "signing.key",
              tmp_path / "data" / "index.sqlite3", tmp_path / "data" / "seaweedfs" / "s3-identity.json"):
        assert p.stat().st_uid == nobody, p
    cfg = tmp_path / "etc" / "labwitness.toml"
    assert cfg.stat().st_uid == 0 and stat.S_IMODE(cfg.stat().st_mode) == 0o640  # the service reads, cannot rewrite
    code, doc = doctor(tmp_path)  # as root, on nobody's installation: the store it ran leaves nothing of root's
    assert by_check(doc)["storage"]["level"] == "ok", doc
    assert [p for p in (tmp_path / "data").rglob("*") if p.lstat().st_uid != nobody] == []
    r = init(tmp_path / "other", "--user", "no-such-user-lw")
    assert r.returncode == 2 and "useradd" in r.stderr


def test_doctor_names_a_database_behind_and_an_unreachable_camera(tmp_path, db_url, rtsp):
    assert init(tmp_path).returncode == 0
    engine = make_engine(db_url)
    upgrade(engine, "0011")  # one migration short of the newest
    engine.dispose()
    code, doc = doctor(tmp_path, "--skip", "storage", LABWITNESS_DATABASE_URL=db_url)
    assert code == 2
    db = by_check(doc)["database"]
    assert db["level"] == "error" and "0011" in db["message"] and db["fix"] == "labwitness db upgrade"

    settings = load_settings(config_file=tmp_path / "etc" / "labwitness.toml")
    engine = make_engine(settings.db_url)
    reg = Registry(engine, lambda: 1)
    reg.add_camera(Camera(id="up", rtsp_url=rtsp.url("/live"), created_ms=1), "test")
    code, doc = doctor(tmp_path, "--skip", "storage")
    assert code == 0 and "1 enabled cameras answer" in by_check(doc)["cameras"]["message"], doc
    dead = free_port()
    reg.add_camera(Camera(id="gone", rtsp_url=f"rtsp://127.0.0.1:{dead}/x", created_ms=1), "test")
    engine.dispose()
    code, doc = doctor(tmp_path, "--skip", "storage")
    cams = by_check(doc)["cameras"]
    assert code == 2 and cams["level"] == "error" and f"gone: 127.0.0.1:{dead} unreachable" in cams["message"], cams
    assert "up:" not in cams["message"]


def _storage(settings_dir: Path, **env) -> Finding:
    settings = load_settings(data_dir=settings_dir, **env)
    return next(f for f in Doctor(settings, skip=frozenset({"files", "database", "spool", "clock", "cameras", "port"})).run()
                if f.check == "storage")


def test_doctor_storage_faults_on_a_real_store(tmp_path, seaweed):
    from conftest import make_store

    store = make_store(seaweed)
    ext = dict(s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS, s3_secret_key=SECRET, s3_bucket=store.bucket)
    good = _storage(tmp_path, **ext)
    assert good.level == "ok" and "COMPLIANCE" in good.message, good

    wrong = _storage(tmp_path, **{**ext, "s3_secret_key": SECRET + "x"})
    assert wrong.level == "error" and "object store not usable" in wrong.message, wrong

    plain = f"nolock-{uuid.uuid4().hex[:8]}"
    store.client.make_bucket(plain)  # no Object Lock
    unlocked = _storage(tmp_path, **{**ext, "s3_bucket": plain})
    assert unlocked.level == "error" and "Object Lock" in unlocked.message, unlocked

    missing = _storage(tmp_path, **{**ext, "s3_bucket": f"none-{uuid.uuid4().hex[:8]}"})
    assert missing.level == "error" and "labwitness init" in missing.fix

    own = EmbeddedSeaweed(tmp_path / "sw", ACCESS, SECRET).start()
    try:
        endpoint = own.endpoint
    finally:
        own.stop()  # a store that is down
    down = _storage(tmp_path, **{**ext, "s3_endpoint": endpoint})
    assert down.level == "error" and "unreachable" in down.message, down


def test_separate_store_unit_serves_and_doctor_sees_it_stop(tmp_path):
    assert init(tmp_path).returncode == 0
    cfg = tmp_path / "etc" / "labwitness.toml"
    with cfg.open("a") as f:
        f.write('embedded_store = "separate"\n')
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "store"], env=clean_env(LABWITNESS_CONFIG=cfg), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "embedded store S3 at" in line:
                break
        code, doc = doctor(tmp_path)
        assert code == 0 and by_check(doc)["storage"]["level"] == "ok", doc
        again = lw(["store"], clean_env(LABWITNESS_CONFIG=cfg))  # a second store on the same directory
        assert again.returncode == 2 and "already run by another process" in again.stderr
        settings = load_settings(config_file=cfg)
        with Runtime(settings, recording=False) as rt:  # what serve does: attach, never spawn
            assert rt.seaweed.attached and rt.seaweed.proc is None
            assert rt.store.lock_config().mode == "COMPLIANCE"
    finally:
        proc.terminate()
        proc.wait(30)
    code, doc = doctor(tmp_path)
    st = by_check(doc)["storage"]
    assert code == 2 and "not running" in st["message"] and "labwitness-store" in st["message"], st
    with pytest.raises(StorageUnavailableError, match="not running"):
        Runtime(settings, recording=False).__enter__()


@pytest.mark.parametrize("text,level", [
    ("Reference ID    : C0A80101 (ntp.lab)\nStratum         : 3\nSystem time     : 0.000012 seconds fast of NTP time\n"
     "Leap status     : Normal\n", "ok"),
    ("Reference ID    : 00000000 ()\nStratum         : 0\nSystem time     : 0.000000 seconds slow of NTP time\n"
     "Leap status     : Not synchronised\n", "warning"),
    ("Reference ID    : C0A80101 (ntp.lab)\nSystem time     : 4.500000 seconds slow of NTP time\n"
     "Leap status     : Normal\n", "warning"),
    ("506 Cannot talk to daemon\n", "unknown"),
])
def test_chronyc_tracking(text, level):
    assert parse_chronyc_tracking(text)[0] == level


@pytest.mark.parametrize("text,level", [
    ("Timezone=Asia/Shanghai\nNTP=yes\nNTPSynchronized=yes\n", "ok"),
    ("Timezone=Asia/Shanghai\nNTP=no\nNTPSynchronized=no\n", "warning"),
    ("Timezone=UTC\n", "unknown"),
])
def test_timedatectl_show(text, level):
    assert parse_timedatectl_show(text)[0] == level


@pytest.mark.parametrize("levels,code", [
    (["ok", "ok"], 0), (["ok", "unknown"], 1), (["warning", "ok"], 1), (["warning", "error"], 2), (["error"], 2),
])
def test_exit_code(levels, code):
    assert exit_code([Finding(str(i), lv, "") for i, lv in enumerate(levels)]) == code


def test_rtsp_options_on_a_listener_that_is_not_rtsp():
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def answer():
        c, _ = srv.accept()
        c.recv(1000)
        c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        c.close()

    threading.Thread(target=answer, daemon=True).start()
    level, msg = rtsp_options(f"rtsp://127.0.0.1:{srv.getsockname()[1]}/x")
    srv.close()
    assert level == "error" and "not RTSP" in msg


def test_doctor_spool_hours_against_the_cameras_bitrate(tmp_path, db_url):
    import shutil
    import time as _time

    from index.models import Segment
    from index.queries import IndexStore

    assert init(tmp_path).returncode == 0
    engine = make_engine(db_url)
    upgrade(engine)
    Registry(engine, lambda: 1).add_camera(Camera(id="cam1", rtsp_url="rtsp://127.0.0.1:1/x", created_ms=1), "test")
    ix = IndexStore(engine)
    now = int(_time.time() * 1000)
    rate = 500_000  # bytes/s: a 4 Mbit/s camera
    for i in range(10):  # the last ten minutes, one-minute segments
        start = now - (10 - i) * 60_000
        ix.add_segment(Segment(camera_id="cam1", start_ms=start, end_ms=start + 60_000, media_duration_ms=60_000,
                               key=f"footage/cam1/{i}.mp4", version_id=f"v{i}", size=rate * 60, sha256="0" * 64))
    engine.dispose()
    free = shutil.disk_usage(tmp_path).free

    def spool(hours_left: float | None) -> tuple[int, dict]:
        env = {"LABWITNESS_DATABASE_URL": db_url}
        if hours_left is not None:  # the reserve takes all but this many hours of the camera's recording
            env["LABWITNESS_SPOOL_RESERVE_BYTES"] = int(free - hours_left * 3600 * rate)
        code, doc = doctor(tmp_path, "--skip", "storage", "--skip", "cameras", **env)
        return code, by_check(doc)["spool"]

    code, sp = spool(1.0)
    assert code == 2 and sp["level"] == "error" and "4.0 Mbit/s" in sp["message"] and "1 cameras" in sp["message"], sp
    code, sp = spool(10.0)
    assert code == 1 and sp["level"] == "warning", sp
    code, sp = spool(None)
    assert sp["level"] == "ok" and "h of 1 cameras" in sp["message"], sp


def test_doctor_on_an_invalid_config_says_which_key(tmp_path):
    cfg = tmp_path / "lw.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\nretention_months = 3\n')
    r = lw(["doctor", "--json"], clean_env(LABWITNESS_CONFIG=cfg))
    found = json.loads(r.stdout)
    assert r.returncode == 2 and found["checks"][0]["check"] == "config" and found["checks"][0]["level"] == "error"
    assert "6" in found["checks"][0]["message"] and str(cfg) in found["checks"][0]["message"]
    cfg.write_text("data_dir = [unclosed\n")
    r = lw(["doctor"], clean_env(LABWITNESS_CONFIG=cfg))
    assert r.returncode == 2 and "cannot read config file" in r.stderr
