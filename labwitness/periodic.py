"""A background worker: ``run()`` around ``run_once()``, backing off while what it needs is down.

The document uploader (storage.doc_spool) and the journaler (retention.journal)
are the same loop around different passes: a pass every ``interval_s``; a
failure the worker expects (``retry_on``: storage or the index down) doubles the
wait up to ``backoff_cap_s`` and is logged once per change of error, not once
per retry; anything else is a bug, logged with its traceback and retried at the
cap, because the worker must outlive it -- its work waits durably meanwhile.
``stop()`` ends the thread and makes one last pass (:meth:`final_pass`), so a
clean shutdown leaves as little as possible behind.
"""

from __future__ import annotations

import logging
import threading
from typing import Self

log = logging.getLogger(__name__)


class PeriodicWorker:
    #: thread name, and the worker's name in the log
    name = "worker"
    #: failures the worker waits out with backoff (anything else is logged as a bug)
    retry_on: tuple[type[BaseException], ...] = ()
    #: log line when a pass fails: zh-CN / English with %.0f for the delay (twice) and %s for the error
    failed_message = "后台任务失败，%.0f 秒后重试 / pass failed, retrying in %.0f s: %s"
    #: log line when the last pass at stop fails (%s: the error)
    left_message = "work left for the next start: %s"

    def __init__(self, *, interval_s: float, backoff_cap_s: float, first_delay_s: float | None = None,
                 stop: threading.Event | None = None) -> None:
        self.interval_s = interval_s
        self.backoff_cap_s = backoff_cap_s
        self.first_delay_s = interval_s if first_delay_s is None else first_delay_s
        self.stop_event = stop or threading.Event()
        self.last_error = ""
        self._thread: threading.Thread | None = None

    def run_once(self) -> object:
        raise NotImplementedError

    def final_pass(self) -> object:
        """The pass ``stop()`` makes after the thread ended (default: one more ``run_once``)."""
        return self.run_once()

    def run(self) -> None:
        delay = self.first_delay_s
        while not self.stop_event.wait(delay):
            try:
                self.run_once()
                self.last_error = ""
                delay = self.interval_s
            except self.retry_on as e:
                delay = min(self.backoff_cap_s, max(1.0, delay * 2))
                if str(e) != self.last_error:  # once per change, not once per retry
                    log.error(self.failed_message, delay, delay, e)
                self.last_error = str(e)
            except Exception as e:  # a bug must not end the worker: its work waits durably
                delay = self.backoff_cap_s
                log.exception("%s: unexpected failure", self.name)
                self.last_error = f"internal: {e}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, then make the last pass (what fails is left for the next start)."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.final_pass()
        except self.retry_on as e:
            log.warning(self.left_message, e)
