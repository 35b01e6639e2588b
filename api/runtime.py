"""Wiring: build storage, index and recorder from :class:`Settings`.

The one place that knows how the packages fit together.  ``Runtime`` is a
context manager: it starts embedded SeaweedFS when no S3 endpoint is set,
validates the bucket's Object Lock, migrates the index, and on exit stops the
recorders and uploads what they leave behind.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

from index.db import make_engine
from index.migrate import upgrade
from index.queries import IndexStore
from labwitness.clock import Clock, SystemClock
from labwitness.errors import IndexUnavailableError
from recorder.metrics import RecorderMetrics
from recorder.service import CameraSpec, RecorderService
from recorder.worker import RecorderConfig
from retention.policy import RetentionPolicy
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

from api.settings import Settings

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.policy = RetentionPolicy(settings.retention_months, settings.retention_margin_days)
        self.metrics = RecorderMetrics()
        self._stack = ExitStack()
        self.seaweed: EmbeddedSeaweed | None = None
        self.store: S3ObjectStore | None = None
        self.index: IndexStore | None = None
        self.recorder: RecorderService | None = None

    def __enter__(self) -> "Runtime":
        try:
            self.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        endpoint = s.s3_endpoint
        if not endpoint:
            self.seaweed = EmbeddedSeaweed(s.data_dir / "seaweedfs", s.s3_access_key, s.s3_secret_key.get_secret_value())
            self.seaweed.start()
            self._stack.callback(self.seaweed.stop)
            endpoint = self.seaweed.endpoint
        self.store = S3ObjectStore(endpoint, s.s3_access_key, s.s3_secret_key.get_secret_value(), s.s3_bucket,
                                   secure=s.s3_secure, region=s.s3_region, allow_unenforced=s.allow_unenforced_retention)
        self.store.check()
        engine = make_engine(s.db_url)
        self._stack.callback(engine.dispose)
        self.index = IndexStore(engine)
        try:
            upgrade(engine)
        except Exception as e:  # recording must not wait for the database
            log.error("index database not reachable at start-up (%s); recording continues into the spool", e)
        self.recorder = RecorderService(
            s.spool_path, self.store, self.index, self.policy,
            RecorderConfig(segment_seconds=s.segment_seconds, open_timeout_s=s.rtsp_open_timeout_s,
                           read_timeout_s=s.rtsp_read_timeout_s, backoff_cap_s=s.backoff_cap_s,
                           recorder_id=s.recorder_id),
            clock=self.clock, metrics=self.metrics,
            spool_max_bytes=s.spool_max_bytes, spool_reserve_bytes=s.spool_reserve_bytes,
        ).start()
        self._stack.callback(self.recorder.stop, 30.0)

    def sync_cameras(self) -> None:
        """Make the running recorders follow the enabled cameras in the index."""
        assert self.index is not None and self.recorder is not None
        try:
            cams = self.index.cameras(enabled_only=True)
        except IndexUnavailableError:
            log.warning("index unavailable; keeping the cameras that are recording now")
            return
        self.recorder.sync([CameraSpec(c.id, c.rtsp_url, c.area_id or "") for c in cams])
