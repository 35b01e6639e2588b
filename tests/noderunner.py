"""A labwitness node as its own process, for the cluster tests (tests/test_jobs_cluster.py).

``python tests/noderunner.py api PORT``: the HTTP app (storage + index, no recorders) on
127.0.0.1:PORT.  ``python tests/noderunner.py worker [SLOW_S]``: export workers only (what
a jobs node runs); with SLOW_S every footage read of the export waits that long first, so
a test can kill the process in the middle of a build.  Settings come from the environment
(``LABWITNESS_*``), as for ``labwitness serve``.  Prints ``ready`` once serving.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class SlowReads:
    """The object store, each ``open`` (a segment read by the stitcher) taking ``delay_s`` longer."""

    def __init__(self, store, delay_s: float) -> None:
        self._store, self._delay = store, delay_s

    def open(self, *a, **kw):
        time.sleep(self._delay)
        return self._store.open(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._store, name)


def main() -> None:
    from api.runtime import Runtime
    from api.settings import load_settings

    settings = load_settings()
    mode = sys.argv[1]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Runtime(settings, recording=False) as rt:
        if mode == "worker":
            if len(sys.argv) > 2:
                rt.exporter.store = SlowReads(rt.exporter.store, float(sys.argv[2]))
            rt.start_export_workers()
            print("ready", rt.export_workers[0].worker, flush=True)
            stop.wait()
            return
        import uvicorn

        from api.app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(settings, rt), host="127.0.0.1", port=int(sys.argv[2]),
                                               log_level="warning"))
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        while not server.started and t.is_alive():
            time.sleep(0.05)
        print("ready", flush=True)
        stop.wait()
        server.should_exit = True
        t.join(10)


if __name__ == "__main__":
    main()
