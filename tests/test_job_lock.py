"""Retention jobs run one at a time across processes (index.joblock), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlmodel import Session, select

from index.db import make_engine, sqlite_url
from index.joblock import job_lock
from index.migrate import upgrade
from index.models import JobRun
from labwitness.clock import SystemClock
from labwitness.errors import JobRefusedError
from retention.content_job import run_content_check
from retention.rebuild import run_rebuild
from retention.sweep import SweepConfig, run_sweep

from clitools import env_for, lw
from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent

#: another process (a CLI run, the service's scheduler) holding a job's lock until told to stop
HOLDER = """
import sys
from index.db import make_engine
from index.joblock import job_lock
with job_lock(make_engine(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


class Holder:
    def __init__(self, db_url: str, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, db_url, name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(30) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def _runs(engine, job: str) -> list[JobRun]:
    with Session(engine) as s:
        return list(s.exec(select(JobRun).where(JobRun.job == job)))


def _free(engine, name: str) -> bool:
    try:
        with job_lock(engine, name):
            return True
    except JobRefusedError:
        return False


def test_a_second_sweep_is_refused_while_one_runs_in_another_process(index, db_url, store):
    engine = index.engine
    holder = Holder(db_url, "index-storage")  # a sweep (or rebuild, reconcile) going on elsewhere
    try:
        res = run_sweep(store, engine, SystemClock(), SweepConfig(), actor="test")
        assert res.status == "refused" and res.summary["reason"] == "already_running", res.summary
        assert "already going" in res.summary["message"] and res.run_id is None
        assert run_rebuild(store, engine, SystemClock(), actor="test").summary["reason"] == "already_running"
        assert _runs(engine, "sweep") == [] and _runs(engine, "rebuild") == []  # health still shows the real run
        # another lock is another job: the content check is not held up by a sweep
        assert run_content_check(index, store, SystemClock()).status == "ok"
    finally:
        holder.release()
    res = run_sweep(store, engine, SystemClock(), SweepConfig(), actor="test")
    assert res.summary["reason"] == "index_empty"  # it ran (and refused the empty index on its own)
    # a holder that dies without letting go (kill -9) leaves no lock behind
    holder = Holder(db_url, "index-storage")
    assert not _free(engine, "index-storage")
    holder.kill()
    wait_for(lambda: _free(engine, "index-storage"), 15, what="the killed holder's lock to go")


def test_two_engines_in_one_process_exclude_each_other(db_url):
    """The scheduler and a CLI-like caller in one process (two engines, two connections)."""
    a, b = make_engine(db_url), make_engine(db_url)
    try:
        with job_lock(a, "content"):
            assert not _free(b, "content")
            assert _free(b, "verify")
        assert _free(b, "content")
    finally:
        a.dispose()
        b.dispose()


def test_cli_sweep_exits_3_while_another_sweep_runs(tmp_path, seaweed):
    env = env_for(tmp_path, seaweed, bucket="cli-lock")
    db = sqlite_url(tmp_path / "data" / "index.sqlite3")
    upgrade(make_engine(db))
    holder = Holder(db, "index-storage")
    try:
        r = lw(["retention", "sweep", "--json"], env)
        assert r.returncode == 3, (r.stdout, r.stderr[-2000:])
        out = json.loads(r.stdout)
        assert out["status"] == "refused" and out["summary"]["reason"] == "already_running"
        assert f"pid {holder.proc.pid}" in out["summary"]["message"]  # says who holds it
        content = Holder(db, "content")  # and a content check beside another one
        try:
            r = lw(["retention", "content", "--json"], env)
            assert r.returncode == 3, (r.stdout, r.stderr[-2000:])
            assert json.loads(r.stdout)["status"] == "refused"
        finally:
            content.release()
    finally:
        holder.release()
    started = time.monotonic()
    r = lw(["retention", "sweep", "--json"], env)
    assert r.returncode == 3 and json.loads(r.stdout)["summary"]["reason"] == "index_empty", time.monotonic() - started
