"""`labwitness retention ...` and `labwitness index rebuild` as scripts use them (real subprocesses)."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import Session, select

from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.models import JobRun
from index.queries import IndexStore
from labwitness.clock import SystemClock

from clitools import env_for, lw
from conftest import make_store
from retentiontools import Fixture


def test_retention_commands_print_json_and_exit_by_status(tmp_path, seaweed):
    store = make_store(seaweed, "cli-retention")
    engine = make_engine(sqlite_url(tmp_path / "data" / "index.sqlite3"))
    upgrade(engine)
    fx = Fixture(store, IndexStore(engine), tmp_path)
    segs = [fx.put("cam-cli", lock_s=None, age=timedelta(days=1), indexed=False) for _ in range(3)]
    env = env_for(tmp_path, seaweed, bucket="cli-retention")

    r = lw(["index", "rebuild", "--json"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["job"] == "rebuild" and out["status"] == "ok" and out["summary"]["segments_added"] == 3

    for cmd in (["retention", "verify"], ["retention", "integrity"], ["retention", "reconcile"]):
        r = lw([*cmd, "--json"], env)
        assert r.returncode == 0, (cmd, r.stdout, r.stderr[-2000:])
        assert json.loads(r.stdout)["status"] == "ok"
    assert json.loads(lw(["retention", "integrity", "--json"], env).stdout)["summary"]["checked"] >= 3

    # all footage is a day old: the sweep refuses the fresh index (exit 3) and deletes nothing
    r = lw(["retention", "sweep", "--dry-run", "--json"], env)
    assert r.returncode == 3, r.stderr[-2000:]
    assert json.loads(r.stdout)["summary"]["reason"] == "index_fresh"
    r = lw(["retention", "sweep"], env)  # human output says why
    assert r.returncode == 3 and "retention period" in r.stderr.replace("\n", " ")

    # a key rewritten with storage credentials: the audit exits 2 (critical)
    import io

    store.client.put_object(store.bucket, segs[0][1].key, io.BytesIO(b"x"), 1)
    r = lw(["retention", "integrity", "--json"], env)
    assert r.returncode == 2 and any(f["kind"] == "altered" for f in json.loads(r.stdout)["findings"])

    r = lw(["retention", "sweep", "--max-share", "1.5"], env)
    assert r.returncode == 2 and "max-share" in r.stderr
    with Session(engine) as s:
        jobs = [j.job for j in s.exec(select(JobRun).order_by(JobRun.id))]
    assert jobs[:4] == ["rebuild", "verify", "integrity", "reconcile"] and jobs.count("sweep") == 2


def test_serve_runtime_starts_and_stops_the_retention_scheduler(tmp_path, seaweed):
    from api.runtime import Runtime
    from api.settings import load_settings

    from conftest import ACCESS, SECRET

    settings = load_settings(data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                             s3_secret_key=SECRET, s3_bucket="rt-jobs", verify_interval_h=0)
    with Runtime(settings, clock=SystemClock()) as rt:
        ids = {j.id for j in rt.jobs.get_jobs()}
        assert ids == {"retention-sweep", "retention-integrity", "retention-reconcile", "retention-content", "retention-seal",
                       "coverage-refresh"}
        sched = rt.jobs
    assert rt.jobs is None and not sched.running
    with Runtime(settings, recording=False) as rt:  # CLI commands: no scheduler
        assert rt.jobs is None
