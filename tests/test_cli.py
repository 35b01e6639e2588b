"""The ``labwitness`` command as a script would use it, in a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index.db import make_engine, sqlite_url
from index.queries import IndexStore
from storage.s3 import S3ObjectStore

from clitools import ROOT, env_for, lw
from conftest import ACCESS, SECRET, free_port, wait_for
from recording import decode_object


def index_of(tmp: Path) -> IndexStore:
    return IndexStore(make_engine(sqlite_url(tmp / "data" / "index.sqlite3")))


def test_record_contract_exits_0_with_everything_locked(tmp_path, seaweed, rtsp):
    env = env_for(tmp_path, seaweed)
    r = lw(["record", "--url", rtsp.url("/live"), "--camera-id", "cam-cli", "--duration", "5",
            "--segment-seconds", "2", "--json"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["uploaded"] is True and summary["cameras"]["cam-cli"]["segments"] >= 2
    assert list((tmp_path / "data" / "spool" / "cam-cli").glob("*.mp4*")) == []
    idx = index_of(tmp_path)
    segs = list(idx.iter_segments("cam-cli"))
    assert len(segs) == summary["cameras"]["cam-cli"]["segments"]
    assert sum(s.frames for s in segs) == summary["cameras"]["cam-cli"]["frames"]
    assert all(s.lock_mode == "COMPLIANCE" for s in segs)
    from index.registry import Registry

    cam = Registry(idx.engine, lambda: 0).camera("cam-cli")
    assert cam.rtsp_url.endswith("/live")


@pytest.mark.parametrize("args, extra_env, code, needle", [
    (["record", "--url", "http://127.0.0.1/x", "--camera-id", "c"], {}, 2, "RTSP"),
    (["record", "--url", "rtsp://127.0.0.1/x", "--camera-id", "../x"], {}, 2, "camera id"),
    (["record", "--url", "rtsp://127.0.0.1/x", "--camera-id", "c", "--segment-seconds", "0"], {}, 2, "SEGMENT_SECONDS"),
    (["record", "--url", "rtsp://127.0.0.1/x", "--camera-id", "c", "--segment-seconds", "-5"], {}, 2, "SEGMENT_SECONDS"),
    (["record", "--url", "rtsp://127.0.0.1/x", "--camera-id", "c", "--duration", "-1"], {}, 2, "duration"),
    (["record", "--url", "rtsp://127.0.0.1/x", "--camera-id", "c"], {"LABWITNESS_RETENTION_MONTHS": "5"}, 2, "6 个月"),
    (["db", "upgrade"], {"LABWITNESS_RETENTION_MONTHS": "1"}, 2, "legal minimum"),
])
def test_bad_configuration_is_refused_at_start(tmp_path, seaweed, args, extra_env, code, needle):
    r = lw(args, env_for(tmp_path, seaweed, **extra_env), timeout=60)
    assert r.returncode == code, (r.stdout, r.stderr[-2000:])
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_wrong_credentials_fail_clearly(tmp_path, seaweed, rtsp):
    r = lw(["record", "--url", rtsp.url("/secure", "admin", "nope"), "--camera-id", "cam-auth", "--duration", "3"],
           env_for(tmp_path, seaweed))
    assert r.returncode == 1
    assert "401" in r.stderr and "nope" not in r.stderr
    assert "Traceback" not in r.stderr


def test_sigkill_mid_segment_then_restart_recovers_the_spool(tmp_path, seaweed, rtsp):
    env = env_for(tmp_path, seaweed, bucket="cli-kill")
    spool = tmp_path / "data" / "spool" / "cam-k"
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "record", "--url", rtsp.url("/live"), "--camera-id", "cam-k",
                             "--duration", "300", "--segment-seconds", "4"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: list(spool.glob("*.json")) or list(spool.glob("*.open.json")), 60, what="recording to start")
        # wait until a segment is ~2.5 s into being written (more than one fragment)
        wait_for(lambda: len(list(spool.glob("*.mp4.part"))) == 1 and any(
            p.stat().st_size > 60_000 for p in spool.glob("*.mp4.part")), 30, what="a part file with fragments")
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    killed_at = time.time()
    parts = list(spool.glob("*.mp4.part"))
    assert len(parts) == 1, "the unfinished segment is on disk"
    r = lw(["record", "--url", rtsp.url("/live"), "--camera-id", "cam-k", "--duration", "3", "--segment-seconds", "4",
            "--json"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert list(spool.glob("*.mp4*")) == [] and list(spool.glob("[0-9]*.json")) == []
    idx = index_of(tmp_path)
    segs = list(idx.iter_segments("cam-k"))
    store = S3ObjectStore(seaweed.endpoint, ACCESS, SECRET, "cli-kill")
    store.check()
    for s in segs:  # no corrupt object: every stored segment decodes cleanly from a keyframe
        d = decode_object(store, s.key, s.version_id)
        assert d["errors"] == 0 and d["first_is_key"] and d["frames"] == s.frames
    salvaged_seq = int(parts[0].name[:12])
    salvaged = next(s for s in segs if s.sequence == salvaged_seq)
    assert salvaged.frames >= 25  # it held more than a fragment: that much was kept
    # at most the unfinished last fragment (1 s) and the in-flight packets were lost
    assert killed_at - salvaged.end_ms / 1000 < 2.5
    gaps = idx.gaps("cam-k")
    down = [g for g in gaps if g.reason == "recorder_down"]
    assert len(down) == 1 and down[0].start_ms == salvaged.end_ms
    after = [s for s in segs if s.start_ms >= down[0].end_ms]
    assert after and after[0].start_ms == down[0].end_ms


def test_db_upgrade_on_postgresql_is_idempotent(tmp_path, seaweed, pg_url):
    env = env_for(tmp_path, seaweed, LABWITNESS_DATABASE_URL=pg_url)
    for _ in range(2):
        r = lw(["db", "upgrade"], env, timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        from alembic.script import ScriptDirectory

        from index.migrate import alembic_config

        assert ScriptDirectory.from_config(alembic_config()).get_current_head() in r.stderr
    from sqlalchemy import create_engine, inspect

    eng = create_engine(pg_url)
    assert {"camera", "segment", "gap"} <= set(inspect(eng).get_table_names())
    eng.dispose()


def test_registry_cli_round_trip_never_shows_passwords(tmp_path, seaweed):
    env = env_for(tmp_path, seaweed)
    assert lw(["area", "add", "--id", "lixue", "--name", "力学室"], env).returncode == 0
    r = lw(["camera", "add", "--id", "utm-cam", "--url", "rtsp://admin:T0psecret@127.0.0.1:8554/main", "--area", "lixue"], env)
    assert r.returncode == 0, r.stderr
    r = lw(["camera", "add", "--id", "utm-cam", "--url", "rtsp://127.0.0.1:8554/main"], env)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = lw(["camera", "add", "--id", "bad", "--url", "rtsp://127.0.0.1/x", "--area", "nowhere"], env)
    assert r.returncode == 2 and "nowhere" in r.stderr  # an invalid argument, like a bad URL
    r = lw(["camera", "add", "--id", "bad", "--url", "ftp://127.0.0.1/x"], env)
    assert r.returncode == 2 and "RTSP" in r.stderr
    assert lw(["equipment", "add", "--id", "UTM-01", "--name", "万能试验机", "--area", "lixue", "--camera", "utm-cam"],
              env).returncode == 0
    cams = json.loads(lw(["camera", "list", "--json"], env).stdout)
    assert cams[0]["rtsp_url"] == "rtsp://127.0.0.1:8554/main" and cams[0]["username"] == "admin"
    assert cams[0]["has_password"] is True
    eq = json.loads(lw(["equipment", "list", "--json"], env).stdout)
    assert eq == [{"id": "UTM-01", "name": "万能试验机", "area_id": "lixue", "kind": "", "camera_ids": ["utm-cam"]}]
    assert lw(["camera", "remove", "utm-cam"], env).returncode == 0
    assert json.loads(lw(["camera", "list", "--json"], env).stdout) == []
    db = (tmp_path / "data" / "index.sqlite3").read_bytes()
    assert b"T0psecret" not in db  # encrypted at rest, and not in the revisions either


def test_health_exit_codes_follow_output_not_liveness(tmp_path, seaweed, rtsp):
    env = env_for(tmp_path, seaweed, bucket="health-footage")
    # a new installation without cameras records nothing: a warning, not "ok"
    r = lw(["health", "--json"], env)
    assert r.returncode == 1, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "warning" and [a["code"] for a in rep["alerts"] if a["level"] != "info"] == ["no_cameras"]
    # recorded a little, then nothing: the camera is offline by its output
    assert lw(["record", "--url", rtsp.url("/live"), "--camera-id", "cam-h", "--duration", "3", "--segment-seconds", "1"],
              env).returncode == 0
    r = lw(["health", "--json"], env)
    rep = json.loads(r.stdout)
    assert rep["cameras"]["cam-h"]["last_segment_age_s"] is not None
    env_short = dict(env, LABWITNESS_SEGMENT_SECONDS="1", LABWITNESS_RTSP_READ_TIMEOUT_S="1")
    import time

    time.sleep(4)
    r = lw(["health", "--json"], env_short)
    rep = json.loads(r.stdout)
    assert r.returncode == 2 and rep["status"] == "critical" and rep["cameras"]["cam-h"]["offline"] is True
    assert any("cam-h" in p for p in rep["problems"])
    r = lw(["health"], dict(env_short, LABWITNESS_S3_ENDPOINT=f"http://127.0.0.1:{free_port()}"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
