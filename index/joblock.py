"""One run of a job at a time, across processes: the service's scheduler and any CLI.

A lock is named (``retention.runs.JOB_LOCKS`` maps jobs to names) and held for
the whole run; a second taker is refused at once with
:class:`~labwitness.errors.JobRefusedError` (reason ``already_running``), never
queued.  Both kinds of lock end with their holder, so a crashed run never
leaves one behind:

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a
  connection of its own, in autocommit (an open transaction held for hours
  would pin the server's snapshot); the server drops it when the connection
  ends.
* SQLite (the single box: every process on this host): an exclusive ``flock``
  on a file beside the database file, which the kernel drops when the holder's
  file closes or its process dies.  ``flock`` belongs to the open file, so two
  threads of one process exclude each other too.  The file names its holder's
  pid and start for the refusal message.  In-memory databases exist only in
  their own process: a process-local lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Engine

from index.queries import db_errors
from labwitness.errors import JobRefusedError

_local_locks: dict[tuple[int, str], threading.Lock] = {}
_local_guard = threading.Lock()


def _refusal(name: str, holder: str = "") -> JobRefusedError:
    who = f" ({holder})" if holder else ""
    return JobRefusedError("already_running",
                           f"任务 {name} 已有一次在运行{who}，本次拒绝执行 / another {name} run is already going{who}: "
                           "refusing to start a second one at the same time; try again when it has finished")


def pg_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(f"labwitness-job:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def _pg_lock(engine: Engine, name: str) -> Iterator[None]:
    key = pg_key(name)
    with db_errors():
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        with db_errors():
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
            holder = "" if got else conn.execute(text(
                "SELECT 'PostgreSQL session pid ' || pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = :k LIMIT 1"), {"k": key}).scalar()
        if not got:
            raise _refusal(name, holder or "")
        try:
            yield
        finally:
            with db_errors():
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()  # ends the session's lock even when the unlock above failed


@contextmanager
def _file_lock(path: Path, name: str) -> Iterator[None]:
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise _refusal(name, f.read(200).strip()) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        f.flush()
        yield
    finally:
        f.close()  # releases the flock


@contextmanager
def _local_lock(engine: Engine, name: str) -> Iterator[None]:
    with _local_guard:
        lock = _local_locks.setdefault((id(engine), name), threading.Lock())
    if not lock.acquire(blocking=False):
        raise _refusal(name)
    try:
        yield
    finally:
        lock.release()


def job_lock(engine: Engine, name: str):
    """Context manager holding the lock ``name`` for the index behind ``engine``;
    raises :class:`JobRefusedError` (``already_running``) if someone holds it."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return _pg_lock(engine, name)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return _file_lock(Path(f"{url.database}.{name}.lock"), name)
    return _local_lock(engine, name)
