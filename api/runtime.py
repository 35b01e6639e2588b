"""Wiring: build storage, index and recorder from :class:`Settings`.

The one place that knows how the packages fit together.  ``Runtime`` is a
context manager: it starts embedded SeaweedFS when no S3 endpoint is set,
validates the bucket's Object Lock, migrates the index, and on exit stops the
recorders and uploads what they leave behind.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator

from index.db import make_engine
from index.migrate import upgrade
from index.models import Camera
from index.queries import IndexStore
from index.audit import AuditLog
from index.records import RecordStore
from index.registry import Registry
from index.tokens import TokenStore
from labwitness.clock import Clock, SystemClock, utc_ms
from labwitness.errors import IndexUnavailableError
from labwitness.private_fs import private_dir
from recorder.metrics import RecorderMetrics
from recorder.service import CameraSpec, RecorderService
from recorder.spool_view import SpoolReader
from recorder.worker import RecorderConfig, check_rtsp_url
from retention.policy import RetentionPolicy
from storage.s3 import S3ObjectStore
from storage.layout import check_camera_id
from storage.seaweed import EmbeddedSeaweed

from api.secrets import CredentialCipher, split_credentials
from api.settings import Settings

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None, recording: bool = True) -> None:
        self.settings = settings
        self.recording = recording  # False: storage and index only (CLI export, verify, ...)
        self.clock = clock or SystemClock()
        self.policy = RetentionPolicy(settings.retention_months, settings.retention_margin_days)
        self.metrics = RecorderMetrics()
        self._stack = ExitStack()
        self.seaweed: EmbeddedSeaweed | None = None
        self.store: S3ObjectStore | None = None
        self.index: IndexStore | None = None
        self.registry: Registry | None = None
        self.tokens: TokenStore | None = None
        self.audit: AuditLog | None = None
        self.discovered: dict = {}  # endpoint -> DiscoveredDevice of the last scan
        self.recorder: RecorderService | None = None
        self.jobs = None  # the retention jobs' scheduler (serve/record only; see start_jobs)
        self.cipher = CredentialCipher.from_settings(
            settings.credentials_key.get_secret_value() if settings.credentials_key else None, settings.data_dir)

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
        private_dir(s.data_dir)
        endpoint = s.s3_endpoint
        if not endpoint:
            self.seaweed = EmbeddedSeaweed(s.data_dir / "seaweedfs", s.s3_access_key, s.s3_secret_key.get_secret_value())
            self.seaweed.start()
            self._stack.callback(self.seaweed.stop)
            endpoint = self.seaweed.endpoint
        self.store = S3ObjectStore(endpoint, s.s3_access_key, s.s3_secret_key.get_secret_value(), s.s3_bucket,
                                   secure=s.s3_secure, region=s.s3_region, allow_unenforced=s.allow_unenforced_retention,
                                   clock=self.clock)
        self.store.check()
        engine = make_engine(s.db_url)
        self._stack.callback(engine.dispose)
        self.index = IndexStore(engine)
        now_ms = lambda: utc_ms(self.clock.now())  # noqa: E731
        self.registry = Registry(engine, now_ms)
        self.tokens = TokenStore(engine, now_ms)
        self.audit = AuditLog(engine, now_ms)
        # What the spool holds (read-only): report and camera footage explain time not indexed yet.
        self.spool_view = SpoolReader(s.spool_path)
        self.records = RecordStore(engine, now_ms, spool=self.spool_view)
        from api.exporter import Exporter

        self.exporter = Exporter(self)
        try:
            upgrade(engine)
            seal_camera_urls(self.registry, self.cipher)
            self._bootstrap_admin()
        except Exception as e:  # recording must not wait for the database
            log.error("index database not reachable at start-up (%s); recording continues into the spool", e)
        if not self.recording:
            return
        self.recorder = RecorderService(
            s.spool_path, self.store, self.index, self.policy,
            RecorderConfig(segment_seconds=s.segment_seconds, open_timeout_s=s.rtsp_open_timeout_s,
                           read_timeout_s=s.rtsp_read_timeout_s, backoff_cap_s=s.backoff_cap_s,
                           recorder_id=s.recorder_id, rtsp_client=s.rtsp_client),
            clock=self.clock, metrics=self.metrics,
            spool_max_bytes=s.spool_max_bytes, spool_reserve_bytes=s.spool_reserve_bytes,
        ).start()
        self._stack.callback(self.recorder.stop, 30.0)
        if s.retention_jobs:
            self.start_jobs()

    # -- retention jobs (sweep, verify, integrity, reconcile) on a schedule ----------
    def start_jobs(self) -> None:
        """Start the retention jobs' scheduler; it is stopped when the runtime exits."""
        if self.jobs is not None:
            return
        from retention.scheduler import build_scheduler

        self.jobs = build_scheduler(self.store, self.index.engine, self.clock, self.settings.jobs_config())
        self.jobs.start()
        self._stack.callback(self.stop_jobs)

    def stop_jobs(self) -> None:
        if self.jobs is not None:
            self.jobs.shutdown(wait=False)
            self.jobs = None

    def _bootstrap_admin(self) -> None:
        """First start only: the token from LABWITNESS_BOOTSTRAP_ADMIN_TOKEN becomes an admin token."""
        token = self.settings.bootstrap_admin_token
        if token is None:
            return
        try:
            if not self.tokens.any():
                self.tokens.create("bootstrap-admin", "admin", "bootstrap", token=token.get_secret_value())
                self.audit.append("system", "token.bootstrap", "bootstrap-admin")
        except IndexUnavailableError:
            log.error("index unavailable: bootstrap admin token not created yet")

    def camera_spec(self, cam: Camera) -> CameraSpec:
        """What a recorder needs: the URL with the decrypted credentials put back."""
        return CameraSpec(cam.id, self.cipher.recording_url(cam), cam.area_id or "")

    def sync_cameras(self) -> None:
        """Make the running recorders follow the enabled cameras in the registry."""
        if self.recorder is None:  # a runtime without recording (CLI export, tests) follows nothing
            return
        try:
            cams = self.registry.cameras(enabled_only=True)
        except IndexUnavailableError:
            log.warning("index unavailable; keeping the cameras that are recording now")
            return
        self.recorder.sync([self.camera_spec(c) for c in cams])

    def new_camera(self, camera_id: str, url: str, **kw) -> Camera:
        return new_camera(self.cipher, utc_ms(self.clock.now()), camera_id, url, **kw)


def new_camera(cipher: CredentialCipher, now_ms: int, camera_id: str, url: str, *, username: str | None = None,
               password: str | None = None, **fields) -> Camera:
    """A Camera row from a URL that may carry credentials; the password and the secret
    query values are encrypted, the stored URL keeps ``***`` in their place."""
    check_camera_id(camera_id)
    check_rtsp_url(url)
    bare, url_user, url_pass = split_credentials(url)
    stored_url, url_secrets_enc = cipher.seal_url(bare)
    return Camera(id=camera_id, rtsp_url=stored_url, url_secrets_enc=url_secrets_enc, username=username or url_user,
                  password_enc=cipher.encrypt(password if password is not None else url_pass),
                  created_ms=now_ms, **fields)


def seal_camera_urls(registry: Registry, cipher: CredentialCipher) -> int:
    """Cameras registered before query secrets were sealed still hold them in clear in
    ``rtsp_url``: encrypt them now (migration 0007 cannot, it has no key). Returns how many."""
    sealed = 0
    for cam in registry.cameras():
        stored_url, url_secrets_enc = cipher.seal_url(cam.rtsp_url, cam.url_secrets_enc)
        if stored_url != cam.rtsp_url:
            registry.update_camera(cam.id, {"rtsp_url": stored_url, "url_secrets_enc": url_secrets_enc}, "system")
            sealed += 1
    if sealed:
        log.info("encrypted the query-string credentials of %d camera URL(s)", sealed)
    return sealed


@dataclass
class IndexOnly:
    registry: Registry
    cipher: CredentialCipher
    tokens: TokenStore
    audit: AuditLog
    records: RecordStore


@contextmanager
def index_only(settings: Settings) -> Iterator[IndexOnly]:
    """The index stores without storage or recorders (CLI commands that only configure or inspect)."""
    private_dir(settings.data_dir)
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        cipher = CredentialCipher.from_settings(
            settings.credentials_key.get_secret_value() if settings.credentials_key else None, settings.data_dir)
        now = lambda: utc_ms(SystemClock().now())  # noqa: E731
        registry = Registry(engine, now)
        seal_camera_urls(registry, cipher)
        yield IndexOnly(registry, cipher, TokenStore(engine, now), AuditLog(engine, now), RecordStore(engine, now))
    finally:
        engine.dispose()
