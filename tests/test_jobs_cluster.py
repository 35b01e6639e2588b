"""Jobs run once, wherever (docs/jobs.md): every job the scheduler runs, the coverage rollup and
the journaler included, takes its lock, and a lock held by another process (another jobs
node's scheduler, a CLI) refuses it on PostgreSQL; the lock dies with its holder (SIGKILL)."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from conftest import ACCESS, SECRET
from clitools import env_for, lw
from test_job_lock import Holder

COVERAGE_SEEN = "coverage_seen_segment_id"


def _meta(engine, key: str):
    from index.models import IndexMeta

    with Session(engine) as s:
        row = s.exec(select(IndexMeta).where(IndexMeta.key == key)).first()
        return row.value if row else None


def _why(res) -> str:
    """A refusal's message: JobResult's summary, or the content check's own summary."""
    return getattr(res, "message", "") or str(getattr(res, "summary", {}).get("message", ""))


def test_every_scheduled_job_takes_its_lock_across_processes(tmp_path, seaweed, pg_url):
    from api.runtime import Runtime
    from api.settings import load_settings
    from index.models import Area, JournalOutbox
    from retention.journal import LOCK as JOURNAL_LOCK, Journaler
    from retention.runs import JOB_LOCKS
    from retention.scheduler import build_scheduler

    settings = load_settings(data_dir=tmp_path / "data", database_url=pg_url, s3_endpoint=seaweed.endpoint,
                             s3_access_key=ACCESS, s3_secret_key=SECRET, s3_bucket="jobs-cluster", retention_jobs=False)
    with Runtime(settings, recording=False) as rt:
        engine = rt.index.engine
        rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")  # something to journal
        results = []
        sched = build_scheduler(rt.store, engine, rt.clock, settings.jobs_config(), on_result=results.append,
                                time_sources=rt.time_sources, seal=rt.run_seal, samples=rt.samples)
        jobs = {j.id: j.func for j in sched.get_jobs()}
        names = {i.removeprefix("retention-") for i in jobs if i.startswith("retention-")}
        assert names == {"sweep", "verify", "integrity", "reconcile", "content", "seal"} and "coverage-refresh" in jobs
        for name in sorted(names):
            holder = Holder(pg_url, JOB_LOCKS[name])  # that job running on another jobs node, or a CLI
            try:
                results.clear()
                jobs[f"retention-{name}"]()
                assert len(results) == 1 and results[0].status == "refused", (name, results)
                assert "already going" in _why(results[0]) and results[0].run_id is None, (name, results)
            finally:
                holder.kill()  # SIGKILL: the server ends its session and the lock with it
            results.clear()
            jobs[f"retention-{name}"]()
            assert len(results) == 1 and "already going" not in _why(results[0]), (name, results)
        # the coverage rollup
        holder = Holder(pg_url, "coverage")
        try:
            jobs["coverage-refresh"]()
            assert _meta(engine, COVERAGE_SEEN) is None  # it did not run
        finally:
            holder.kill()
        jobs["coverage-refresh"]()
        assert _meta(engine, COVERAGE_SEEN) is not None
        # the journaler (every recording node runs one): one drains, the other leaves the outbox alone
        journaler = Journaler(engine, rt.documents, rt.clock, "node-b")
        with Session(engine) as s:
            waiting = len(list(s.exec(select(JournalOutbox.id))))
        assert waiting > 0
        holder = Holder(pg_url, JOURNAL_LOCK)
        try:
            assert journaler.run_once() == 0
        finally:
            holder.kill()
        assert journaler.run_once() >= waiting


def test_cli_job_is_refused_while_another_process_runs_it_on_postgresql(tmp_path, seaweed, pg_url):
    """The service's scheduler (here: a process holding the job's lock as the scheduler's run
    does) and ``labwitness retention ...`` on another machine share one PostgreSQL."""
    from index.db import make_engine
    from index.migrate import upgrade

    env = env_for(tmp_path, seaweed, bucket="cli-pg-lock", LABWITNESS_DATABASE_URL=pg_url)
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    for job, lock in (("verify", "verify"), ("reconcile", "index-storage"), ("integrity", "integrity")):
        holder = Holder(pg_url, lock)
        try:
            r = lw(["retention", job, "--json"], env)
            assert r.returncode == 3, (job, r.stdout, r.stderr[-2000:])
            out = json.loads(r.stdout)
            assert out["status"] == "refused" and out["summary"]["reason"] == "already_running", out
            assert "PostgreSQL session pid" in out["summary"]["message"]  # says who holds it
        finally:
            holder.release()
    r = lw(["retention", "verify", "--json"], env)
    assert r.returncode != 3 or json.loads(r.stdout)["summary"].get("reason") != "already_running", r.stdout
