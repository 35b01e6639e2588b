"""Bad input gets a clear error, once (issue 12): camera URLs checked at every door,
nulls for NOT NULL fields, only the project's own validation errors as 422, one
exit-code rule for the CLI, malformed evidence packages, and a recorder that
logs a failure once per change of state instead of a traceback per retry."""

from __future__ import annotations

import os
import logging
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app as cli_app
from api.evidence import MANIFEST, PUBKEY, SIGNATURE, SigningKey, verify_package
from labwitness.errors import IntegrityError, StreamError, ValidationError
from recorder.rtsp_url import check_rtsp_url
from recorder.spool import CameraSpool, SpoolQuota
from recorder.worker import CameraWorker, RecorderConfig

from conftest import ACCESS, SECRET, free_port, wait_for
from evidencetools import make_package as _package
from webtools import csrf_of, sign_in, web_runtime

ROOT = Path(__file__).resolve().parents[1]
BAD_URL = "rtsp://256.1.1.1:99999/x"


# -- 1. one rule for camera URLs -------------------------------------------------------
@pytest.mark.parametrize("url", [
    "rtsp://127.0.0.1/x", "rtsp://user:pass@192.168.1.64:554/Streaming/Channels/101", "RTSP://cam-1/",
    "rtsps://cam.lab.local:322/a?channel=1&subtype=0", "rtsp://[::1]:8554/live", "rtsp://[fe80::1%25eth0]/x",
    "rtsp://admin:p%40ss@h:1/", "rtsp://admin:p@ss@10.0.0.2/x", "rtsp://host.example.:65535", "rtsp://h/通道1",
    "rtsp://摄像机.example/x", "rtsp://user@h/",
])
def test_camera_url_rule_accepts_what_cameras_use(url):
    assert check_rtsp_url(url) == url


@pytest.mark.parametrize("url, needle", [
    (BAD_URL, "not an IPv4 address"), ("rtsp://1.2.3/x", "not an IPv4 address"), ("rtsp://01.2.3.4/", "IPv4"),
    ("rtsp://h:99999/", "out of range"), ("rtsp://h:0/", "out of range"), ("rtsp://h:/", "not a number"),
    ("rtsp://h:abc/", "not a number"), ("http://h/x", "rtsp://"), ("rtsp:/h", "rtsp://"), ("rtsp:///x", "host is missing"),
    ("rtsp://:p@h/", "user name"), ("rtsp://@h/", "user name"), ("rtsp://u:p#x@h/", "%23"), ("rtsp://h/a b", "space"),
    ("rtsp://h/x\n", "control"), ("rtsp://[::1/x", "closing"), ("rtsp://[zz::1]/", "IPv6"), ("rtsp://::1/", "brackets"),
    ("rtsp://-h/", "valid name"), ("rtsp://a..b/", "valid name"), ("rtsp://u:%zz@h/", "hex"), ("rtsp://u:%0a@h/", "control"),
    ("rtsp://h/%zz", "hex"), ("", "empty"), ("rtsp://h/" + "x" * 2000, "longer than"),
])
def test_camera_url_rule_says_what_is_wrong(url, needle):
    with pytest.raises(ValidationError, match="invalid camera RTSP URL") as e:
        check_rtsp_url(url)
    assert needle in str(e.value)
    assert "u:p" not in str(e.value)  # the user part is never repeated: it may hold a password


@pytest.fixture(scope="module")
def web(tmp_path_factory, seaweed):
    with web_runtime(tmp_path_factory.mktemp("bad-input"), seaweed) as (client, rt, tokens):
        client.headers["Authorization"] = f"Bearer {tokens['admin']}"
        yield client, rt, tokens


def test_every_door_refuses_a_bad_camera_url(web, tmp_path):
    from camera_discovery.models import DiscoveredDevice, MediaProfile

    client, rt, tokens = web
    before = {c.id for c in rt.registry.cameras()}
    # REST: add, change
    r = client.post("/api/v1/cameras", json={"id": "bad-1", "rtsp_url": BAD_URL})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "256.1.1.1" in r.json()["detail"]
    r = client.patch("/api/v1/cameras/cam-web", json={"rtsp_url": "rtsp://127.0.0.1:70000/x"})
    assert r.status_code == 422 and "out of range" in r.json()["detail"]
    assert rt.registry.camera("cam-web").rtsp_url.startswith("rtsp://127.0.0.1:8554/")
    # a discovery result is not trusted either: the device's own answer is checked the same way
    rt.registry_admin.discovered = {"urn:uuid:odd": DiscoveredDevice(endpoint="urn:uuid:odd",
                                                                     profiles=[MediaProfile(token="p", stream_uri=BAD_URL)])}
    r = client.post("/api/v1/cameras", json={"id": "bad-2", "from_discovery": "urn:uuid:odd"})
    assert r.status_code == 422 and "IPv4" in r.json()["detail"]
    # the web forms (typed URL, and a discovered device) say why and write nothing
    b = sign_in(client.app, tokens["admin"])
    csrf = csrf_of(b.get("/ui/cameras").text)
    assert b.post("/ui/cameras/add", data={"csrf": csrf, "id": "bad-3", "rtsp_url": BAD_URL}).status_code == 303
    assert "invalid camera RTSP URL" in b.get("/ui/cameras").text
    assert b.post("/ui/discovery/add", data={"csrf": csrf, "id": "bad-4", "endpoint": "urn:uuid:odd"}).status_code == 303
    assert "invalid camera RTSP URL" in b.get("/ui/discovery").text
    assert {c.id for c in rt.registry.cameras()} == before
    # the CLI
    env = {"LABWITNESS_DATA_DIR": str(tmp_path / "data")}
    r = CliRunner().invoke(cli_app, ["camera", "add", "--id", "bad-5", "--url", BAD_URL], env=env)
    assert r.exit_code == 2 and "256.1.1.1" in r.output and "registered" not in r.output


@pytest.mark.slow
def test_record_with_a_bad_url_exits_2_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABWITNESS_")}
    env.update({"LABWITNESS_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)})
    r = subprocess.run([sys.executable, "-m", "api.cli", "record", "--url", BAD_URL, "--camera-id", "c", "--duration", "3"],
                       env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "256.1.1.1" in r.stderr
    assert not (tmp_path / "data" / "spool" / "c").exists()  # nothing started


# -- 1. the recorder logs a failure once per change of state ----------------------------
def _worker(tmp_path: Path, url: str, cls=CameraWorker, camera_id: str = "cam-bad") -> CameraWorker:
    root = tmp_path / "spool"
    spool = CameraSpool(root, camera_id, SpoolQuota(root, None, 0))
    return cls(camera_id, url, spool, RecorderConfig(segment_seconds=0.5, backoff_cap_s=0.05, open_timeout_s=3,
                                                     read_timeout_s=3))


def _run(worker: CameraWorker, until, what: str, timeout: float = 30) -> None:
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        wait_for(until, timeout, what=what)
    finally:
        worker.stop.set()
        t.join(15)


def _worker_logs(caplog, level=logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "recorder.worker" and r.levelno >= level]


def test_a_camera_url_stored_before_the_check_is_a_gap_logged_once(tmp_path, caplog):
    """A registry row written before the doors checked URLs fully: the worker records a
    not_rtsp gap and says so once, not a traceback every retry."""
    caplog.set_level(logging.DEBUG, logger="recorder.worker")
    w = _worker(tmp_path, BAD_URL)
    _run(w, lambda: (w.spool.pending_open_gap() or {}).get("attempts", 0) >= 5, "five failed attempts")
    gap = w.spool.pending_open_gap()
    assert gap["reason"] == "not_rtsp" and "256.1.1.1" in gap["detail"]
    warnings = _worker_logs(caplog, logging.WARNING)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is None and "not_rtsp" in warnings[0].getMessage()


class BuggyWorker(CameraWorker):
    """A bug in labwitness's own session code (as ``Port out of range`` from the native
    client was) for the first attempts, then the real session: a fault that cannot be
    caused for real any more, because the URL check now catches the one we had."""

    bug_attempts = 4

    def run_once(self) -> None:
        if self.bug_attempts:
            self.bug_attempts -= 1
            raise ValueError("Port out of range 0-65535")
        super().run_once()


def test_an_unexpected_failure_is_logged_once_with_its_traceback_then_recovery(tmp_path, rtsp, caplog):
    caplog.set_level(logging.DEBUG, logger="recorder.worker")
    w = _worker(tmp_path, rtsp.url("/live"), cls=BuggyWorker)
    _run(w, lambda: w.status.state == "recording", "recording after the failures")
    errors = _worker_logs(caplog, logging.ERROR)
    assert len(errors) == 1, [r.getMessage() for r in errors]  # four failures, one line
    assert errors[0].exc_info is not None and "recorder_error" in errors[0].getMessage()
    assert "Port out of range" in errors[0].getMessage()
    assert any("recording again" in r.getMessage() for r in _worker_logs(caplog))
    assert sum(r.exc_info is not None for r in caplog.records) == 1


def test_a_worker_thread_that_dies_is_restarted_and_logged_once(tmp_path, store, caplog):
    """What escapes CameraWorker.run (here: its spool directory became a file) is logged
    once by the service, and the camera is started again at the next sync."""
    from index.db import make_engine, sqlite_url
    from index.migrate import upgrade
    from index.queries import IndexStore
    from recorder.service import CameraSpec, RecorderService
    from retention.policy import RetentionPolicy

    caplog.set_level(logging.DEBUG, logger="recorder.service")
    engine = make_engine(sqlite_url(tmp_path / "i.sqlite3"))
    upgrade(engine)
    svc = RecorderService(tmp_path / "spool", store, IndexStore(engine), RetentionPolicy(),
                          RecorderConfig(segment_seconds=1, backoff_cap_s=0.05))
    spool_dir = svc.spool("cam-x").dir
    shutil.rmtree(spool_dir)
    spool_dir.write_bytes(b"not a directory")
    spec = [CameraSpec("cam-x", f"rtsp://127.0.0.1:{free_port()}/x")]
    try:
        starts = 0
        for _ in range(3):
            svc.sync(spec)
            starts += 1
            wait_for(lambda: not svc._workers["cam-x"][2].is_alive(), 15, what="the worker to die")
        errors = [r for r in caplog.records if r.name == "recorder.service" and r.levelno >= logging.ERROR]
        assert starts == 3 and len(errors) == 1 and errors[0].exc_info is not None
        assert "NotADirectoryError" in errors[0].getMessage()
    finally:
        svc.stop()


# -- 2. null for a NOT NULL field is a 422 ---------------------------------------------------
def _put_patch_operations(app) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
            if method in ("put", "patch")}


def test_null_for_a_required_field_is_422_in_every_put_and_patch(web):
    from index.models import Camera, TestRecord
    from api.patch_body import not_null_columns

    client, rt, _ = web
    valid_record = {"report_no": "JC-NULL-1", "commission_no": "WT-1", "project_name": "p", "test_item": "t",
                    "sample_ids": ["S-1"], "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
                    "started_at": "2026-01-01T00:00:00+08:00", "ended_at": "2026-01-01T01:00:00+08:00"}
    # every PUT/PATCH of the API, a valid body, and the table it writes (a new route must be added here)
    table = {
        ("PATCH", "/api/v1/cameras/{camera_id}"): ("/api/v1/cameras/cam-web", {"name": "x"}, Camera),
        ("PUT", "/api/v1/test-records/{record_id}"): ("/api/v1/test-records/REC-NULL-1", valid_record, TestRecord),
    }
    assert _put_patch_operations(client.app) == set(table)
    before = rt.registry.camera("cam-web")
    client.headers["Authorization"] = f"Bearer {web[2]['ingest']}"
    assert client.put("/api/v1/test-records/REC-NULL-1", json=valid_record).status_code == 201
    for (method, _), (url, body, tbl) in table.items():
        client.headers["Authorization"] = f"Bearer {web[2]['ingest' if method == 'PUT' else 'admin']}"
        fields = set(body) | ({"enabled", "rtsp_url", "area_id", "username"} if tbl is Camera else set())
        for field in sorted(fields):
            nullable_column = field not in not_null_columns(tbl) and field in tbl.__table__.columns
            r = client.request(method, url, json={**body, field: None})
            if nullable_column and method == "PATCH":
                assert r.status_code == 200, (field, r.text)  # clears a nullable column: allowed
                continue
            assert r.status_code == 422, (method, field, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json" and field in r.json()["detail"]
    client.headers["Authorization"] = f"Bearer {web[2]['admin']}"
    after = rt.registry.camera("cam-web")
    assert (after.name, after.enabled, after.rtsp_url) == ("x", before.enabled, before.rtsp_url)
    assert client.patch("/api/v1/cameras/cam-web", json={"name": before.name, "area_id": "lixue"}).status_code == 200


# -- 3. only the project's validation errors are 422; a bug is a 500 with an id in the log -------
def test_validation_errors_are_422_and_bugs_are_500_with_an_error_id_in_the_log(web, caplog):
    client, rt, _ = web
    r = client.get("/api/v1/cameras/cam-web/footage", params={"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["type"].endswith("/invalid-input") and "end must be after start" in r.json()["detail"]
    r = client.get("/api/v1/compliance", params={"month": "2999-01"})  # a month that has not begun
    assert r.status_code == 422 and "not begun" in r.json()["detail"]

    def broken_route() -> dict:
        # a plain ValueError from labwitness's own code (not a client's input) is a bug
        return {"value": int("/srv/labwitness/secret-path")}

    client.app.get("/api/v1/test-only/broken")(broken_route)
    caplog.set_level(logging.ERROR, logger="api.problems")
    r = client.get("/api/v1/test-only/broken")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    error_id = body["error_id"]
    assert len(error_id) >= 12 and error_id in body["detail"] and "secret-path" not in r.text
    logged = [rec for rec in caplog.records if rec.name == "api.problems" and error_id in rec.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None and logged[0].exc_info[0] is ValueError


# -- 4. one exit-code rule for the whole CLI ---------------------------------------------------
@pytest.fixture
def cli_env(tmp_path, seaweed):
    env = {"LABWITNESS_DATA_DIR": str(tmp_path / "data"), "LABWITNESS_S3_ENDPOINT": seaweed.endpoint,
           "LABWITNESS_S3_ACCESS_KEY": ACCESS, "LABWITNESS_S3_SECRET_KEY": SECRET, "LABWITNESS_S3_BUCKET": "exit-codes",
           "LABWITNESS_RETENTION_JOBS": "false"}
    runner = CliRunner()
    assert runner.invoke(cli_app, ["area", "add", "--id", "lixue", "--name", "力学室"], env=env).exit_code == 0
    assert runner.invoke(cli_app, ["camera", "add", "--id", "cam-1", "--url", "rtsp://127.0.0.1/x", "--area", "lixue"],
                         env=env).exit_code == 0
    return env


@pytest.mark.parametrize("args, extra_env, code, needle", [
    # 2: invalid arguments or configuration
    (["camera", "add", "--id", "c2", "--url", BAD_URL], {}, 2, "IPv4"),
    (["camera", "add", "--id", "c2", "--url", "rtsp://127.0.0.1/x", "--area", "nowhere"], {}, 2, "nowhere"),
    (["camera", "add", "--id", "c 2", "--url", "rtsp://127.0.0.1/x"], {}, 2, "camera id"),
    (["equipment", "add", "--id", "E-1", "--name", "x", "--camera", "ghost"], {}, 2, "ghost"),
    (["token", "create", "--name", "t", "--role", "root"], {}, 2, "role"),
    (["report", "compliance", "--month", "2026-13"], {}, 2, "YYYY-MM"),
    (["retention", "sweep", "--max-share", "1.5"], {}, 2, "max-share"),
    (["retention", "verify"], {"LABWITNESS_RETENTION_MONTHS": "5"}, 2, "6"),
    (["camera", "list"], {"LABWITNESS_RETENTION_MONTHS": "5"}, 2, "6"),
    (["camera", "frobnicate"], {}, 2, "No such command"),
    # 1: the operation failed
    (["camera", "add", "--id", "cam-1", "--url", "rtsp://127.0.0.1/y"], {}, 1, "already exists"),
    (["camera", "remove", "ghost"], {}, 1, "not found"),
    (["camera", "list"], {"LABWITNESS_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:{port}/x"}, 1, "error"),
    (["export", "NO-SUCH-REPORT"], {}, 1, "NO-SUCH-REPORT"),
    # 3: refused (a fresh index: the sweep will not act)
    (["retention", "sweep", "--dry-run"], {}, 3, "refused"),
])
def test_one_exit_code_rule_for_every_command(cli_env, args, extra_env, code, needle):
    env = {**cli_env, **{k: v.format(port=free_port()) for k, v in extra_env.items()}}
    r = CliRunner().invoke(cli_app, args, env=env)
    assert r.exit_code == code, (args, r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)  # no traceback
    assert needle in r.output, r.output


def test_the_exit_code_rule_is_in_help():
    r = CliRunner().invoke(cli_app, ["--help"], terminal_width=200)
    text = " ".join(r.output.split())
    assert r.exit_code == 0
    assert "1 操作失败 / the operation failed" in text and "2 参数或配置无效 / invalid arguments or configuration" in text
    assert "3 被拒绝执行 / refused" in text


# -- 5. a malformed evidence package is named, not a traceback --------------------------------
def _rsa_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _declared_size_bomb(tmp_path: Path) -> Path:
    """A member of a few deflated bytes whose directory entry declares ~4 GiB."""
    p = _package(tmp_path, "declared", members={"cam-1.mp4": b"\x00" * 64}, compression=zipfile.ZIP_DEFLATED)
    data = bytearray(p.read_bytes())
    cd = data.find(b"PK\x01\x02")
    while cd != -1:  # every central directory entry: uncompressed size (offset 24) = 0xFFFFFFF0
        if data[cd + 46: cd + 46 + struct.unpack_from("<H", data, cd + 28)[0]] == b"cam-1.mp4":
            struct.pack_into("<I", data, cd + 24, 0xFFFFFFF0)
        cd = data.find(b"PK\x01\x02", cd + 4)
    p.write_bytes(bytes(data))
    return p


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


MALFORMED = {
    "rsa-key": (lambda d: _package(d, "rsa", members={PUBKEY: _rsa_pem()}), "not an Ed25519 key"),
    "not-a-key": (lambda d: _package(d, "garbage-key", members={PUBKEY: b"hello"}), "not a PEM public key"),
    "non-utf8-signature": (lambda d: _package(d, "sig", members={SIGNATURE: b"\xff\xfe\x00\x81 not text"}), "not base64 text"),
    "dot-dot-name": (lambda d: _package(d, "dotdot", members={"../../etc/cron.d/x": b"* * * * * root true"}),
                     "not a plain relative file name"),
    "absolute-name": (lambda d: _package(d, "abs", members={"/tmp/x.mp4": b"x"}), "not a plain relative file name"),
    "ratio-bomb": (lambda d: _package(d, "bomb", members={"cam-1.mp4": b"\x00" * (64 << 20)},
                                      compression=zipfile.ZIP_DEFLATED), "zip bomb"),
    "declared-size-bomb": (_declared_size_bomb, "zip bomb"),
    "too-many-members": (lambda d: _package(d, "many", members={f"f{i}.bin": b"" for i in range(5000)}), "5005 members"),
    "manifest-not-a-list": (lambda d: _package(d, "list", members={MANIFEST: b"[1, 2, 3]"}), "no valid \"files\" list"),
    "not-a-zip": (lambda d: _write(d / "x.zip", b"PK\x05\x06 nope"), "not a readable evidence package"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_verify_names_what_is_wrong_with_a_malformed_package(tmp_path, case):
    build, needle = MALFORMED[case]
    pkg = build(tmp_path)
    r = CliRunner().invoke(cli_app, ["verify", str(pkg)], terminal_width=400)
    assert r.exit_code == 1, (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert needle in " ".join(r.output.split()), r.output


def test_verify_a_genuine_package_and_a_bad_trusted_key(tmp_path):
    key = SigningKey.load(tmp_path / "lab")
    pkg = _package(tmp_path, "good", key=key)
    rep = verify_package(pkg, key.public_pem())
    assert rep.ok and rep.files == {"cam-1.mp4": "ok"}
    (tmp_path / "rsa.pub").write_bytes(_rsa_pem())
    r = CliRunner().invoke(cli_app, ["verify", str(pkg), "--public-key", str(tmp_path / "rsa.pub")], terminal_width=400)
    assert r.exit_code == 2 and "not an Ed25519 key" in " ".join(r.output.split())  # the caller's argument
    with pytest.raises(IntegrityError, match="zip bomb"):
        verify_package(MALFORMED["ratio-bomb"][0](tmp_path))
    # a member whose bytes do not match its CRC is named, the rest still checked
    data = bytearray(pkg.read_bytes())
    at = data.find(bytes(range(256)))
    data[at] ^= 0xFF
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    rep = verify_package(bad)
    assert not rep.ok and rep.files["cam-1.mp4"] == "unreadable"


def test_stream_errors_keep_their_gap_reason_for_a_stored_bad_url():
    from recorder.inputs import open_input

    with pytest.raises(StreamError) as e:
        open_input(BAD_URL, "native", 1, 1)
    assert e.value.reason == "not_rtsp"
