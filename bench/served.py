"""The product's HTTP API served for a benchmark: ``create_app`` on a ``Runtime`` over an
existing index database, behind uvicorn on 127.0.0.1 (a free port), with an operations
token — what an operator's ``curl -H 'Authorization: Bearer …' /api/v1/health`` meets.

The node runs the ``api`` role only (no recorder: the lab's cameras are not real, and an
API node is what answers ``GET /health`` in a cluster), with the embedded SeaweedFS the
runtime starts itself in a temporary data directory, and a clock pinned at the lab's
"now" (the synthetic footage ends there; the real date would make every camera offline
and every window empty).  Used by ``bench.index_scale``.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import httpx
import uvicorn

from labwitness.clock import SystemClock, from_ms


class PinnedClock(SystemClock):
    """Wall time fixed at ``now_ms`` (movable by the bench); sleeping and monotonic time are real."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def now(self) -> datetime:
        return from_ms(self.now_ms)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(db_url: str, now_ms: int) -> Iterator[tuple[httpx.Client, PinnedClock]]:
    """An httpx client authenticated as an operations user against the served app, and its clock."""
    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="lw-bench-served-") as tmp:
        settings = load_settings(data_dir=Path(tmp) / "data", database_url=db_url, roles="api",
                                 s3_bucket="bench-served", retention_jobs=False)
        clock = PinnedClock(now_ms)
        with Runtime(settings, clock=clock) as rt:
            _, token = rt.tokens.create("bench-ops", "operations", "bench")
            port = _free_port()
            server = uvicorn.Server(uvicorn.Config(create_app(settings, rt), host="127.0.0.1", port=port,
                                                   log_level="warning", access_log=False))
            thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 60
                while not server.started:
                    if time.monotonic() > deadline or not thread.is_alive():
                        raise RuntimeError("uvicorn did not start")
                    time.sleep(0.05)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
                    yield client, clock
            finally:
                server.should_exit = True
                thread.join(30)


def timed_gets(client: httpx.Client, path: str, runs: int, params: dict | None = None) -> dict:
    """``runs`` GETs after one warm-up: p50 / p99 / max in seconds, the body's size, the last JSON."""
    def one() -> tuple[float, httpx.Response]:
        t = time.perf_counter()
        r = client.get(path, params=params)
        r.raise_for_status()
        return time.perf_counter() - t, r

    _, r = one()  # warm: statement caches, pages, the first rollup refresh
    times = []
    for _ in range(runs):
        s, r = one()
        times.append(s)
    times.sort()
    p99 = times[min(len(times) - 1, max(0, round(0.99 * len(times)) - 1))]
    return {"runs": runs, "p50_s": round(statistics.median(times), 4), "p99_s": round(p99, 4),
            "max_s": round(times[-1], 4), "bytes": len(r.content), "json": r.json()}
