"""Wiring: build storage, index, recorder and the API's services from :class:`Settings`.

The one place that knows how the packages fit together.  ``Runtime`` is a
context manager: it starts embedded SeaweedFS when no S3 endpoint is set,
validates the bucket's Object Lock, migrates the index, hands each service
(exporter, registry admin, health) the few collaborators it uses, and on exit
stops the recorders and uploads what they leave behind.  Routes never see the
runtime itself: :mod:`api.deps` hands them its parts one by one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from apscheduler.schedulers.background import BackgroundScheduler

from index.audit import AuditLog
from index.leases import LeaseStore
from index.db import lease_engine, make_engine
from index.exports import ExportStore
from index.migrate import upgrade
from index.partitions import ensure_partitions
from index.models import Camera
from index.queries import IndexStore
from index.records import RecordStore
from index.registry import Registry
from index.seals import SealStore
from index.tokens import TokenStore
from labwitness.clock import Clock, SystemClock, utc_ms
from labwitness.errors import IndexUnavailableError
from labwitness.picture_samples import SampleSpool
from labwitness.private_fs import private_dir
from recorder.leases import LeaseManager, NodeHeartbeat, node_identity
from recorder.metrics import RecorderMetrics
from recorder.service import CameraSpec, RecorderService
from recorder.spool_view import SpoolReader
from recorder.worker import RecorderConfig
from retention.journal import Journaler
from retention.policy import RetentionPolicy
from retention.runs import JobResult
from retention.scheduler import build_scheduler
from retention.seals import SealSigner, run_seal
from retention.witness import WitnessOutbox
from storage.doc_spool import DocumentSpool, DocumentUploader
from retention.time_sources import SealTimeSource
from retention.time_witness import TimeSource
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

from api.camera_rows import seal_camera_urls
from api.export_worker import ExportWorker, worker_id
from api.exporter import Exporter
from api.health import Health, HealthCollector
from api.registry_admin import RegistryAdmin
from api.secrets import CredentialCipher, audit_key
from api.settings import Settings
from api.time_witnesses import time_sources
from api.witnesses import delivering, witness_outbox, witness_time_sources

log = logging.getLogger(__name__)


class Runtime:
    """Everything a running labwitness holds; each service gets the few parts it uses."""

    # Created by start() (``with Runtime(settings) as rt``): storage, the index and the
    # services on them.  Read before start they do not exist; nothing checks for None.
    store: S3ObjectStore
    index: IndexStore
    registry: Registry
    tokens: TokenStore
    audit: AuditLog
    records: RecordStore
    exporter: Exporter
    registry_admin: RegistryAdmin
    health: Health
    health_collector: HealthCollector  # registered once on ``metrics``: /metrics carries health's gauges
    documents: DocumentSpool  # journal batches and seals on their way to the locked bucket
    time_sources: list[TimeSource]  # the expiry sweep's time witnesses (scheduled and CLI sweeps alike)
    witness_outbox: WitnessOutbox  # enqueue(doc_id, body, signature, key_id): owed to every configured witness

    def __init__(self, settings: Settings, *, clock: Clock | None = None, recording: bool = True,
                 leases: bool = True, seaweed: EmbeddedSeaweed | None = None) -> None:
        self.settings = settings
        #: the embedded store of this data directory, already launched (EmbeddedSeaweed.launch: the demo starts
        #: it before its imports); start() waits for it and stops it on exit as one it started itself
        self._launched = seaweed
        self.recording = recording  # False: storage and index only (CLI export, verify, ...)
        #: sub-stream pictures: the recorder writes them, the content job (scheduled or CLI) takes them
        self.samples = SampleSpool(settings.samples_path)
        self.clock: Clock = clock or SystemClock()
        self.policy = RetentionPolicy(settings.retention_months, settings.retention_margin_days)
        self.metrics = RecorderMetrics()
        self.cipher = credential_cipher(settings)
        # What the spool holds (read-only): report and camera footage explain time not indexed yet.
        self.spool_view = SpoolReader(settings.spool_path)
        self.seaweed: EmbeddedSeaweed | None = None  # the embedded store, when no S3 endpoint is set
        self.recorder: RecorderService | None = None  # recording runtimes only
        self.jobs: BackgroundScheduler | None = None  # the retention jobs' scheduler (see start_jobs)
        self.document_uploader: DocumentUploader | None = None  # recording runtimes only
        self.journaler: Journaler | None = None  # recording runtimes only
        self.lease_manager: LeaseManager | None = None  # recorder nodes on PostgreSQL (docs/cluster.md)
        #: a serving runtime with the recorder role records cameras (all of them on SQLite, its leases' on PostgreSQL)
        self.records_cameras = recording and "recorder" in settings.role_set
        self.export_workers: list[ExportWorker] = []  # jobs nodes (see start_export_workers)
        #: False: the caller says what to record (``labwitness record``), not the camera leases
        self.use_leases = leases
        self.export_workers: list[ExportWorker] = []  # jobs nodes (see start_export_workers)
        #: (wall start, wall end) of each step of start(): where a slow start-up goes (bench/demo_start.py)
        self.start_steps: dict[str, tuple[float, float]] = {}
        self._stack = ExitStack()

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
        if s.s3_endpoint:
            # Settings refuses an external endpoint without both keys
            endpoint, access = s.s3_endpoint, s.s3_access_key or ""
            secret = s.s3_secret_key.get_secret_value() if s.s3_secret_key else ""
        else:
            if s.s3_access_key or s.s3_secret_key:
                log.warning("LABWITNESS_S3_ACCESS_KEY/SECRET_KEY 仅用于外部存储，已忽略 / are for an external S3 endpoint and "
                            "are ignored: the embedded store uses the credentials it generated in %s",
                            s.data_dir / "seaweedfs")
            # its own credentials, generated on first start
            self.seaweed = self._launched or EmbeddedSeaweed(s.data_dir / "seaweedfs")
            if s.embedded_store == "separate":  # `labwitness store` runs it (deploy/systemd/labwitness-store.service)
                self.seaweed.attach()
            else:
                t = time.time()
                self._stack.callback(self.seaweed.stop)  # also one that was launched but never answers
                self.seaweed.start()
                self.start_steps["seaweedfs"] = (self.seaweed.launched_at or t, time.time())
            endpoint, access, secret = self.seaweed.endpoint, self.seaweed.access_key, self.seaweed.secret_key
        self.store = S3ObjectStore(endpoint, access, secret, s.s3_bucket,
                                   secure=s.s3_secure, region=s.s3_region, allow_unenforced=s.allow_unenforced_retention,
                                   clock=self.clock)
        t = time.time()
        self.store.check()
        self.start_steps["store_check"] = (t, time.time())
        self.documents = DocumentSpool(s.spool_path / "documents", self.store, self.policy, self.clock)
        engine = make_engine(s.db_url)
        self._stack.callback(engine.dispose)
        self.index = IndexStore(engine)
        now_ms = self.now_ms
        self.registry = Registry(engine, now_ms)
        self.tokens = TokenStore(engine, now_ms)
        self.audit = AuditLog(engine, now_ms, audit_key(s.data_dir))
        self.records = RecordStore(engine, now_ms, spool=self.spool_view)
        self.exporter = Exporter(s, self.clock, self.store, self.index, self.records, self.spool_view, self.audit,
                                 ExportStore(engine, now_ms), self.policy)
        try:
            t = time.time()
            upgrade(engine)
            self.start_steps["migrations"] = (t, time.time())
            ensure_partitions(engine, now_ms())  # PostgreSQL: this month and the next ones exist
            seal_camera_urls(self.registry, self.cipher)
            self._bootstrap_admin()
        except Exception as e:  # recording must not wait for the database
            log.error("index database not reachable at start-up (%s); recording continues into the spool", e)
        # The journal (issue 14 §2): the document uploader and the journaler that feeds it are
        # registered before the recorder so that they stop after it (ExitStack: last in, first
        # out): the recorder's last uploads are indexed, journaled, then uploaded.
        leases = self._join_cluster(engine)  # a second node on SQLite is refused here (ConfigError)
        if self.recording:
            self.document_uploader = DocumentUploader(self.documents).start()
            self._stack.callback(self.document_uploader.stop)
            self.journaler = Journaler(engine, self.documents, self.clock, s.recorder_id,
                                       interval_s=s.journal_interval_s).start()
            self._stack.callback(self.journaler.stop)
        if self.records_cameras:
            self.recorder = RecorderService(
                s.spool_path, self.store, self.index, self.policy,
                RecorderConfig(segment_seconds=s.segment_seconds, open_timeout_s=s.rtsp_open_timeout_s,
                               read_timeout_s=s.rtsp_read_timeout_s, backoff_cap_s=s.backoff_cap_s,
                               recorder_id=s.recorder_id, rtsp_client=s.rtsp_client,
                               first_segment_seconds=s.first_segment_seconds),
                clock=self.clock, metrics=self.metrics,
                spool_max_bytes=s.spool_max_bytes, spool_reserve_bytes=s.spool_reserve_bytes,
                samples=self.samples, sample_seconds=s.content_sample_seconds,
            ).start()
            self._stack.callback(self.recorder.stop, 30.0)
        if self.records_cameras and self.use_leases and leases.sqlite is False:  # PostgreSQL: the cameras whose lease this node holds
            self.lease_manager = LeaseManager(
                leases, self.recorder, self._enabled_specs, node_id=s.node_id, lease_s=s.lease_seconds,
                renew_s=s.lease_renew_seconds, cap=s.max_cameras_per_node, clock=self.clock, metrics=self.metrics,
                rates=lambda: leases.rates(self.now_ms() - 600_000)).start()
            self._stack.callback(self.lease_manager.stop, 30.0)  # before the recorder's stop: hand over first
        elif self.recording:
            self._stack.callback(NodeHeartbeat(leases, s.node_id, s.lease_renew_seconds).start().stop, 5.0)
        self.registry_admin = RegistryAdmin(self.registry, self.audit, self.cipher, self.clock, self.recorder,
                                            discovery_port=s.discovery_port, discovery_interfaces=s.discovery_ifaces,
                                            follow=self.lease_manager.wake.set if self.lease_manager else None)
        # seals go to the witnesses outside the box through this outbox (api.witnesses)
        self.witness_outbox, witnesses = witness_outbox(s, self.clock, self.policy, engine)
        if self.recording and witnesses:
            self._stack.enter_context(delivering(self.witness_outbox, witnesses, self.clock, s))
        self.health = Health(s, self.clock, self.store, self.index, self.policy, self.recorder,
                             embedded_storage=self.seaweed is not None, witnesses=self.witness_outbox,
                             documents=self.documents)
        self.time_sources = time_sources(self.store, self.registry, self.cipher, embedded_store=self.seaweed is not None,
                                         max_skew_s=s.sweep_max_clock_skew_s) + witness_time_sources(witnesses)
        if s.seal_interval_h > 0:  # a seal job on schedule bounds the present from both sides
            self.time_sources.append(SealTimeSource(SealStore(engine).newest_created_ms,
                                                    span_s=2 * s.seal_interval_h * 3600 + s.seal_grace_min * 60))
        self.health_collector = HealthCollector(self.health)
        self.metrics.registry.register(self.health_collector)
        if self.recording and s.retention_jobs and "jobs" in s.role_set:
            self.start_jobs()
        # the jobs role: export workers claim queued exports (docs/jobs.md), whether or not jobs are scheduled
        if self.recording and "jobs" in s.role_set:
            self.start_export_workers()

    def now_ms(self) -> int:
        return utc_ms(self.clock.now())

    def _join_cluster(self, engine) -> LeaseStore:
        """Register this node in ``cluster_node`` (serving runtimes only).  On SQLite a second live node
        is a ConfigError; a database down at start-up is logged and the heartbeat catches up."""
        if self.recording and engine.dialect.name == "postgresql":  # a pool of its own, every wait bounded
            engine = lease_engine(engine, self.settings.lease_seconds)
            self._stack.callback(engine.dispose)
        leases = LeaseStore(engine, self.now_ms)
        if self.recording:
            s = self.settings
            host, pid = node_identity()
            try:
                leases.register(s.node_id, s.roles, host, pid, package_version(), live_ms=round(s.lease_seconds * 1000))
            except IndexUnavailableError as e:
                log.error("node %s not registered yet (index unreachable: %s)", s.node_id, e)
        return leases

    def _enabled_specs(self) -> list[CameraSpec]:
        return [self.camera_spec(c) for c in self.registry.cameras(enabled_only=True)]

    # -- retention jobs (sweep, verify, integrity, reconcile) on a schedule ----------
    def start_jobs(self) -> None:
        """Start the retention jobs' scheduler; it is stopped when the runtime exits."""
        if self.jobs is not None:
            return
        self.jobs = build_scheduler(self.store, self.index.engine, self.clock, self.settings.jobs_config(),
                                    time_sources=self.time_sources, seal=self.run_seal, samples=self.samples)
        self.jobs.start()
        self._stack.callback(self.stop_jobs)

    # -- export workers (the export queue, docs/jobs.md) ---------------------------------
    @property
    def node_id(self) -> str:
        return self.settings.node_id

    def start_export_workers(self) -> None:
        """Start ``export_workers`` workers claiming queued exports; stopped when the runtime exits
        (an export still being built then goes back to the queue)."""
        if self.export_workers:
            return
        s = self.settings
        for n in range(s.export_workers):
            w = ExportWorker(self.exporter, worker_id(self.node_id, n), poll_s=s.export_poll_s)
            w.name = f"export-worker-{n}"
            self.export_workers.append(w.start())
            self._stack.callback(w.stop)

    def seal_signer(self) -> SealSigner:
        """The lab's key as the seal job uses it (retention does not import the API's key handling)."""
        key = self.exporter.key
        return SealSigner(key.fingerprint, key.public_pem(), key.sign)

    def run_seal(self, actor: str = "scheduler") -> JobResult:
        """One seal run (retention.seals): its objects go through the document spool."""
        return run_seal(self.index.engine, self.clock, self.documents, self.seal_signer(), witness=self.witness_outbox,
                        objects=self.store, actor=actor)

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

    # -- the cameras and their recorders (api.registry_admin) ---------------------------
    def camera_spec(self, cam: Camera) -> CameraSpec:
        return self.registry_admin.camera_spec(cam)

    def sync_cameras(self) -> None:
        self.registry_admin.sync_cameras()

    def new_camera(self, camera_id: str, url: str, **kw) -> Camera:
        return self.registry_admin.new_camera(camera_id, url, **kw)


def package_version() -> str:
    try:
        return importlib.metadata.version("labwitness")
    except importlib.metadata.PackageNotFoundError:  # a source tree without an install
        return ""


def credential_cipher(settings: Settings) -> CredentialCipher:
    """The cipher of camera passwords: the configured key, else the data directory's own."""
    key = settings.credentials_key
    return CredentialCipher.from_settings(key.get_secret_value() if key else None, settings.data_dir)


def check_single_node(settings: Settings) -> None:
    """SQLite serves one node: ConfigError (exit 2) before ``serve`` starts when another is alive on it."""
    if not settings.db_url.startswith("sqlite"):
        return
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        LeaseStore(engine, lambda: utc_ms(SystemClock().now())).check_alone(
            settings.node_id, live_ms=round(settings.lease_seconds * 1000))
    except IndexUnavailableError:
        pass  # the runtime reports an unreachable index itself
    finally:
        engine.dispose()


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
        cipher = credential_cipher(settings)
        now: Callable[[], int] = lambda: utc_ms(SystemClock().now())  # noqa: E731
        registry = Registry(engine, now)
        seal_camera_urls(registry, cipher)
        yield IndexOnly(registry, cipher, TokenStore(engine, now), AuditLog(engine, now, audit_key(settings.data_dir)),
                        RecordStore(engine, now))
    finally:
        engine.dispose()
