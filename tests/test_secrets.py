"""Secrets (issue 12): credentials in a camera URL's query string, the bootstrap admin
token, and the permissions of what the service writes to disk.

Real components throughout: the REST API through its app, SQLite, SeaweedFS, the
GStreamer RTSP simulator, the recorder's own threads and the CLI in a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import ACCESS, SECRET, free_port, wait_for
from labwitness.url_secrets import redact_text, redact_url, restore_query_secrets, split_query_secrets

ROOT = Path(__file__).resolve().parents[1]
QUERY_SECRET = "Qry-Pa55-never-shown"
USERINFO_SECRET = "Usr-Pa55-never-shown"


# -- the rule (pure) ------------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    ("rtsp://h/ch1?user=u&password=p1", "rtsp://h/ch1?user=u&password=***"),
    ("rtsp://h:554/ch1?usr=u&pwd=p1&channel=1&subtype=0", "rtsp://h:554/ch1?usr=u&pwd=***&channel=1&subtype=0"),
    ("rtsp://h/tcp/av0_0?loginuse=admin&loginpas=p1", "rtsp://h/tcp/av0_0?loginuse=admin&loginpas=***"),
    ("rtsp://h/x?username=u&passwd=p1", "rtsp://h/x?username=u&passwd=***"),
    ("rtsp://h/x?user=u&pass=p1", "rtsp://h/x?user=u&pass=***"),
    ("rtsp://h/x?PassWord=p%26q%3D1&token=t&authkey=k", "rtsp://h/x?PassWord=***&token=***&authkey=***"),
    ("rtsp://admin:p1@h/x?user=admin&psw=p2", "rtsp://admin:***@h/x?user=admin&psw=***"),
    ("rtsp://[fe80::1]:554/x?pwd=1#frag", "rtsp://[fe80::1]:554/x?pwd=***#frag"),
    ("rtsp://h/x?pwd=1&pwd=2", "rtsp://h/x?pwd=***&pwd=***"),
    ("rtsp://h/Streaming/Channels/101", "rtsp://h/Streaming/Channels/101"),
    ("rtsp://h/x?token", "rtsp://h/x?token"),
    # Xiongmai (and OEMs): the credentials in the path (tests/fixtures/onvif/xiongmai-*, use-go/onvif#6)
    ("rtsp://h:554/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp?real_stream",
     "rtsp://h:554/user=admin_password=***_channel=1_stream=0.sdp?real_stream"),
    ("rtsp://h/user=admin_password=a_b_channel=1_stream=0.sdp", "rtsp://h/user=admin_password=***_channel=1_stream=0.sdp"),
    ("rtsp://h/user=admin_password=_channel=1_stream=0.sdp", "rtsp://h/user=admin_password=***_channel=1_stream=0.sdp"),
    ("rtsp://h/user=admin&password=p1&channel=1&stream=0.sdp?", "rtsp://h/user=admin&password=***&channel=1&stream=0.sdp?"),
    ("rtsp://u:p2@h/ch/pwd=p1/live?pwd=p3", "rtsp://u:***@h/ch/pwd=***/live?pwd=***"),
    ("rtsp://h/cam/realmonitor?channel=1&subtype=0", "rtsp://h/cam/realmonitor?channel=1&subtype=0"),
    ("rtsp://h/keyframe=1/x", "rtsp://h/keyframe=***/x"),  # a non-secret taken for one: only its display
])
def test_redaction_table(url, shown):
    assert redact_url(url) == shown
    stored, secrets = split_query_secrets(url)
    assert redact_url(stored) == shown  # what is stored shows nothing more than the redacted URL
    assert restore_query_secrets(stored, secrets) == url  # ...and gives the very URL back
    assert redact_text(f"failed to open [{url}].") == f"failed to open [{shown}]."


def test_a_shown_placeholder_keeps_the_stored_value():
    stored, secrets = split_query_secrets("rtsp://h/x?user=u&pwd=old&ch=1")
    assert split_query_secrets(stored) == (stored, [])  # "***" is a placeholder, not a new secret
    assert restore_query_secrets("rtsp://h/y?user=u&pwd=***&ch=2", secrets) == "rtsp://h/y?user=u&pwd=old&ch=2"


def test_discovery_results_show_no_uri_secret():
    from camera_discovery.models import DiscoveredDevice, MediaProfile

    d = DiscoveredDevice(endpoint="urn:uuid:1", profiles=[MediaProfile("P", stream_uri=f"rtsp://h/x?pwd={QUERY_SECRET}")],
                         snapshot_uri=f"http://h/snap.cgi?user=a&password={QUERY_SECRET}")
    assert QUERY_SECRET not in json.dumps(d.to_json())


# -- query credentials through the whole service ---------------------------------------

@contextmanager
def service(tmp_path, seaweed, bucket: str, **kw):
    """A whole labwitness on SQLite (recording on), its app, and one token per role."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings
    from index.models import Area

    settings = load_settings(data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                             s3_secret_key=SECRET, s3_bucket=bucket, segment_seconds=1.0, retention_jobs=False,
                             discovery_port=free_port(), discovery_interfaces="127.0.0.1", **kw)
    with Runtime(settings) as rt:
        rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")
        app = create_app(settings, rt, sync_interval_s=0.5)
        with TestClient(app) as client:
            tokens = {r: rt.tokens.create(f"t-{r}", r, "test")[1] for r in ("admin", "inspector", "operations")}
            yield client, rt, tokens, app


def _as(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _logged(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records)


def test_query_password_is_encrypted_and_never_shown(tmp_path, seaweed, rtsp, caplog):
    from api.web.render import scrub
    from webtools import sign_in

    caplog.set_level(logging.DEBUG)
    url = f"{rtsp.url('/live')}?user=lab&password={QUERY_SECRET}"
    with service(tmp_path, seaweed, "secrets-footage") as (client, rt, tokens, app):
        r = client.post("/api/v1/cameras", headers=_as(tokens["admin"]),
                        json={"id": "cam-q", "rtsp_url": url, "area_id": "lixue", "username": "lab",
                              "password": USERINFO_SECRET})
        assert r.status_code == 201, r.text
        assert r.json()["rtsp_url"] == f"{rtsp.url('/live')}?user=lab&password=***"

        # recorded with the real URL: the secrets were put back for the camera
        cam = rt.registry.camera("cam-q")
        assert rt.camera_spec(cam).url.endswith(f"/live?user=lab&password={QUERY_SECRET}")
        assert f"lab:{USERINFO_SECRET}@" in rt.camera_spec(cam).url
        wait_for(lambda: len(list(rt.index.iter_segments("cam-q"))) >= 2, 60, what="segments of cam-q")

        # a URL pasted back from what is shown keeps the stored secret; a new one replaces it
        shown = r.json()["rtsp_url"]
        assert client.patch("/api/v1/cameras/cam-q", headers=_as(tokens["admin"]), json={"rtsp_url": shown}).status_code == 200
        assert rt.camera_spec(rt.registry.camera("cam-q")).url.endswith(f"password={QUERY_SECRET}")
        new_url = url.replace(QUERY_SECRET, QUERY_SECRET + "-2")
        assert client.patch("/api/v1/cameras/cam-q", headers=_as(tokens["admin"]), json={"rtsp_url": new_url}).status_code == 200
        assert rt.camera_spec(rt.registry.camera("cam-q")).url.endswith(f"password={QUERY_SECRET}-2")

        seen = []
        for role in ("admin", "inspector", "operations"):
            for path in ("/api/v1/cameras", "/api/v1/cameras/cam-q"):
                r = client.get(path, headers=_as(tokens[role]))
                assert r.status_code == 200, (role, path, r.text)
                seen.append(r.text)
            assert "password=***" in seen[-1]
        revisions = client.get("/api/v1/revisions", headers=_as(tokens["admin"]))
        audit = client.get("/api/v1/audit", headers=_as(tokens["admin"]))
        seen += [revisions.text, audit.text]
        assert any(e["action"] == "camera.add" and e["detail"]["rtsp_url"].endswith("password=***")
                   for e in audit.json())
        assert any((rv["after"] or {}).get("url_secrets_enc") == "*** (changed)" for rv in revisions.json())
        browser = sign_in(app, tokens["admin"])
        for page in ("/ui/cameras", "/ui/audit"):
            r = browser.get(page)
            assert r.status_code == 200, page
            seen.append(r.text)
        seen.append(scrub(f"error [{url}]"))
        for text_ in seen:
            assert QUERY_SECRET not in text_ and USERINFO_SECRET not in text_

    # at rest: neither secret is in the index database in clear (camera, revisions, audit)
    data = tmp_path / "data"
    raw = b"".join(p.read_bytes() for p in data.glob("index.sqlite3*"))
    assert QUERY_SECRET.encode() not in raw and USERINFO_SECRET.encode() not in raw
    assert QUERY_SECRET not in _logged(caplog) and USERINFO_SECRET not in _logged(caplog)


@pytest.mark.parametrize("client_kind", ["native", "ffmpeg"])
def test_a_failing_camera_never_logs_its_query_password(tmp_path, seaweed, rtsp, caplog, client_kind):
    """The camera answers 404 to a path that does not exist: the failure is logged, kept as
    the worker's last error and as the gap's detail — each with the password redacted."""
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://lab:{USERINFO_SECRET}@{rtsp.url('/no-such-path')[len('rtsp://'):]}?user=lab&pwd={QUERY_SECRET}"
    with service(tmp_path, seaweed, f"secrets-fail-{client_kind}", rtsp_client=client_kind) as (client, rt, tokens, _):
        rt.registry.add_camera(rt.new_camera("cam-bad", url, area_id="lixue"), actor="test")
        rt.sync_cameras()
        worker = wait_for(lambda: rt.recorder.workers().get("cam-bad"), 10, what="worker")
        wait_for(lambda: worker.status.last_error, 30, what="a failure")
        last_error = worker.status.last_error
        gap = rt.recorder.spool("cam-bad").pending_open_gap()
        health = client.get("/api/v1/health", headers=_as(tokens["operations"])).text
    assert "pwd=***" in last_error, last_error
    for text_ in (last_error, json.dumps(gap, default=str), health, _logged(caplog)):
        assert QUERY_SECRET not in text_ and USERINFO_SECRET not in text_


def test_an_older_installation_is_sealed_at_start(tmp_path):
    """Rows written before this version: a query password in clear in ``camera.rtsp_url``
    and in revisions, a 10-character token prefix. Migration 0007 and the next start fix all."""
    from api.runtime import index_only
    from api.settings import load_settings
    from index.db import make_engine
    from index.migrate import upgrade

    settings = load_settings(data_dir=tmp_path / "data")
    engine = make_engine(settings.db_url)
    upgrade(engine, "0006")
    old_url = f"rtsp://10.0.0.5/ch1?user=u&password={QUERY_SECRET}"
    snap = json.dumps({"id": "old", "rtsp_url": old_url, "password_enc": None})
    with engine.begin() as c:
        c.execute(text("INSERT INTO camera (id, name, rtsp_url, enabled, created_ms, manufacturer, model, serial) "
                       "VALUES ('old', '', :u, 1, 0, '', '', '')"), {"u": old_url})
        c.execute(text("INSERT INTO revision (entity, entity_id, action, actor, at_ms, before, after) "
                       "VALUES ('camera', 'old', 'create', 'x', 0, NULL, :a)"), {"a": snap})
        c.execute(text("INSERT INTO apitoken (name, role, token_hash, prefix, created_ms, created_by) "
                       "VALUES ('old', 'admin', :h, 'lw_short12', 0, 'x')"), {"h": "0" * 64})
    engine.dispose()
    with index_only(settings) as ix:
        cam = ix.registry.camera("old")
        assert cam.rtsp_url == "rtsp://10.0.0.5/ch1?user=u&password=***" and cam.url_secrets_enc
        assert ix.cipher.recording_url(cam) == old_url
        assert all(QUERY_SECRET not in (r.before or "") + (r.after or "") for r in ix.registry.revisions())
        assert [t.prefix for t in ix.tokens.list()] == ["lw_sho"]
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("index.sqlite3*"))
    assert QUERY_SECRET.encode() not in raw


def test_the_registry_refuses_a_url_that_still_holds_a_secret(tmp_path):
    from api.runtime import index_only
    from api.settings import load_settings
    from index.models import Camera

    with index_only(load_settings(data_dir=tmp_path / "data")) as ix:
        for url in (f"rtsp://h/x?pwd={QUERY_SECRET}", f"rtsp://u:{USERINFO_SECRET}@h/x"):
            with pytest.raises(ValueError):
                ix.registry.add_camera(Camera(id="c1", rtsp_url=url, created_ms=0), "test")
        assert ix.registry.cameras() == []


# -- the bootstrap admin token ---------------------------------------------------------

def _cli(args: list[str], data_dir: Path, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, LABWITNESS_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=e, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("token", ["admin", "lw_" + "x" * 28])  # 5 and 31 characters
def test_a_short_bootstrap_token_is_refused_at_start(tmp_path, token):
    from api.settings import load_settings
    from labwitness.errors import ConfigError

    with pytest.raises(ConfigError, match="至少 32 个字符 / is too short: at least 32 characters"):
        load_settings(bootstrap_admin_token=token)
    r = _cli(["token", "list"], tmp_path / "data", LABWITNESS_BOOTSTRAP_ADMIN_TOKEN=token)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "LABWITNESS_BOOTSTRAP_ADMIN_TOKEN" in r.stderr and "at least 32 characters" in r.stderr
    assert token not in r.stderr + r.stdout


def test_every_token_shows_at_most_six_characters(tmp_path, seaweed):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings
    from labwitness.errors import ValidationError

    boot = "lw_boot-" + "B" * 32
    settings = load_settings(data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                             s3_secret_key=SECRET, s3_bucket="token-footage", retention_jobs=False,
                             bootstrap_admin_token=boot)
    with Runtime(settings, recording=False) as rt:
        with pytest.raises(ValidationError):
            rt.tokens.create("short", "admin", "test", token="lw_only-twenty-chars")
        with TestClient(create_app(settings, rt)) as c:
            created = c.post("/api/v1/tokens", json={"name": "ops", "role": "operations"}, headers=_as(boot))
            assert created.status_code == 201
            listed = c.get("/api/v1/tokens", headers=_as(boot)).json()
    assert {t["name"]: t["prefix"] for t in listed} == {"bootstrap-admin": boot[:6], "ops": created.json()["token"][:6]}
    assert all(len(t["prefix"]) <= 6 for t in listed + [created.json()])


# -- permissions of what the service writes --------------------------------------------

def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _modes(paths) -> dict[str, int]:
    """Modes of the files that still exist (the spool renames and removes them as it goes)."""
    out = {}
    for p in paths:
        try:
            out[p.name] = _mode(p)
        except FileNotFoundError:
            pass
    return out


def test_data_spool_index_keys_and_store_are_owner_only(tmp_path, seaweed, rtsp):
    from api.evidence import SigningKey
    from api.runtime import Runtime
    from api.settings import load_settings
    from storage.seaweed import EmbeddedSeaweed

    old = os.umask(0o022)  # the usual umask: what the service creates must not depend on it
    try:
        data, spool = tmp_path / "data", tmp_path / "elsewhere" / "spool"
        data.mkdir(mode=0o755)  # prepared beforehand, world-readable: tightened at start
        (data / "index.sqlite3").write_bytes(b"")
        os.chmod(data / "index.sqlite3", 0o644)
        settings = load_settings(data_dir=data, spool_dir=spool, s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                                 s3_secret_key=SECRET, s3_bucket="perm-footage", segment_seconds=1.0,
                                 retention_jobs=False)
        with Runtime(settings) as rt:
            rt.registry.add_camera(rt.new_camera("cam-p", rtsp.url("/live"), password="pw"), actor="test")
            rt.sync_cameras()
            footage = wait_for(lambda: _modes(spool.glob("cam-p/*.mp4*")), 60, what="footage being written to the spool")
            assert set(footage.values()) == {0o600}, footage
            SigningKey.load(data)
            db_files = list(data.glob("index.sqlite3*"))
            assert {p.name for p in db_files} >= {"index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"}
            for p in [data, spool, spool / "cam-p"]:
                assert _mode(p) == 0o700, p
            for p in [*db_files, data / "credentials.key", data / "signing.key"]:
                assert _mode(p) == 0o600, p
        sw = EmbeddedSeaweed(tmp_path / "store", ACCESS, SECRET)
        sw.data_dir.mkdir(mode=0o755)
        sw.start()
        try:
            assert _mode(tmp_path / "store") == 0o700
        finally:
            sw.stop()
    finally:
        os.umask(old)
