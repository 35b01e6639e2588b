"""``labwitness plan`` as a script runs it, and ``--from-running`` against a real index (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from clitools import ROOT, lw
from index.db import make_engine
from index.migrate import upgrade
from index.models import Camera, Gap, Segment
from index.queries import IndexStore
from index.registry import Registry


def _env(tmp_path, **extra) -> dict:
    env = dict(os.environ)
    for k in [k for k in env if k.startswith("LABWITNESS_")]:
        del env[k]
    env.update({"LABWITNESS_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def test_plan_json_and_text(tmp_path):
    r = lw(["plan", "--cameras", "64", "--bitrate", "4Mbit", "--cores-per-node", "2", "--json"], _env(tmp_path))
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["cameras"] == 64 and p["ingest_bps"] == 256e6
    assert p["held_days"] == 192.0  # 6 months (at most 184 days) + 7 days margin + 1 day sweep interval
    assert p["recorder_nodes"] == 1 and p["recorder_nodes_n_plus_1"] == 2
    assert p["storage_replicated_bytes"] == 2 * p["storage_logical_bytes"]
    r = lw(["plan", "--cameras", "10", "--bitrate", "512k", "--replication", "3", "--months", "12"], _env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "存储（3 副本）/ storage, 3 copies" in r.stdout and "录像节点 / recorder nodes" in r.stdout
    assert "12 个月 / months" in r.stderr


def test_plan_takes_retention_from_the_installations_settings(tmp_path):
    r = lw(["plan", "--cameras", "1", "--bitrate", "4M", "--json"],
           _env(tmp_path, LABWITNESS_RETENTION_MONTHS=12, LABWITNESS_RETENTION_MARGIN_DAYS=0))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["held_days"] == 367.0  # 12 months at most 366 days + the sweep's day


@pytest.mark.parametrize("args", [
    ["--cameras", "0", "--bitrate", "4M"], ["--cameras", "-3", "--bitrate", "4M"],
    ["--cameras", "3", "--bitrate", "4MB"], ["--cameras", "3", "--bitrate", "fast"],
    ["--cameras", "3", "--bitrate", "4M", "--months", "5"], ["--cameras", "3"],
    ["--cameras", "3", "--bitrate", "4M", "--replication", "0"],
    ["--cameras", "3", "--bitrate", "4M", "--cpu-per-stream", "0"],
])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, args):
    # in-process (the subprocess form is proven above): the same root group and exit-code rule
    from typer.testing import CliRunner

    from api.cli import app

    for k, v in _env(tmp_path).items():
        monkeypatch.setenv(k, v)
    for k in [k for k in os.environ if k.startswith("LABWITNESS_") and k != "LABWITNESS_DATA_DIR"]:
        monkeypatch.delenv(k)
    r = CliRunner().invoke(app, ["plan", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and " / " in r.output


def test_from_running_uses_measured_bitrates_gaps_and_cpu(tmp_path, db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    now = int(time.time() * 1000)
    reg = Registry(engine, lambda: now)
    for cid in ("fast", "slow", "idle"):
        reg.add_camera(Camera(id=cid, rtsp_url=f"rtsp://127.0.0.1/{cid}", created_ms=now), "test")
    reg.add_camera(Camera(id="off", rtsp_url="rtsp://127.0.0.1/off", enabled=False, created_ms=now), "test")
    ix = IndexStore(engine)
    # 30 one-minute segments each in the last hours: fast at 6 Mbit/s, slow at 1 Mbit/s; off (disabled) at 50
    for cid, bps in (("fast", 6e6), ("slow", 1e6), ("off", 50e6)):
        for i in range(30):
            start = now - (i + 2) * 60_000
            ix.add_segment(Segment(camera_id=cid, start_ms=start, end_ms=start + 60_000, media_duration_ms=60_000,
                                   key=f"v1/{cid}/{i}.mp4", version_id="v", size=int(bps / 8 * 60), sha256="0" * 64))
    # one old segment far outside the window must not count
    ix.add_segment(Segment(camera_id="slow", start_ms=now - 3 * 86400_000, end_ms=now - 3 * 86400_000 + 60_000,
                           media_duration_ms=60_000, key="v1/slow/old.mp4", version_id="v", size=10**12, sha256="0" * 64))
    for i in range(3):
        ix.add_gap(Gap(camera_id="fast", start_ms=now - (i + 1) * 3600_000, end_ms=now - (i + 1) * 3600_000 + 5000,
                       reason="timeout"))
    engine.dispose()

    # a real process burning CPU stands in for the recorder whose CPU is measured
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                               "while time.process_time()-t<1.0: pass\ntime.sleep(60)"])
    try:
        time.sleep(1.5)
        env = _env(tmp_path, LABWITNESS_DATABASE_URL=db_url)
        r = lw(["plan", "--from-running", "--recorder-pid", str(burner.pid), "--json"], env)
        assert r.returncode == 0, r.stderr
        p = json.loads(r.stdout)
    finally:
        burner.kill()
        burner.wait()
    assert p["cameras"] == 3  # the enabled ones
    assert p["ingest_bps"] == pytest.approx(6e6 + 1e6 + 3.5e6, rel=1e-3)  # idle at the measured mean
    assert "measured: 2 of 3 cameras" in p["inputs"]["sources"]["bitrate"]
    assert p["inputs"]["gaps_per_camera_day"] == pytest.approx(3 / 3)  # 3 gaps over 3 cameras in 24 h
    assert "measured: process" in p["inputs"]["sources"]["cpu"]
    assert 0 < p["inputs"]["cpu_s_per_stream_min"] < 60  # ~1 CPU-s over a few seconds, over 3 cameras

    r = lw(["plan", "--from-running", "--bitrate", "2M", "--json"], env)
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["ingest_bps"] == pytest.approx(6e6 + 1e6 + 2e6, rel=1e-3)  # idle at the given --bitrate
    assert p["inputs"]["cpu_s_per_stream_min"] == 0.30 and "constant" in p["inputs"]["sources"]["cpu"]
    r = lw(["plan", "--from-running", "--cameras", "3"], env)
    assert r.returncode == 2
