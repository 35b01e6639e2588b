"""One typed settings object (pydantic-settings), read from ``LABWITNESS_*``.

Built once by the CLI and passed in everywhere; nothing reads the environment
on its own.  A TOML file named by ``LABWITNESS_CONFIG`` may set the same keys
(lower-case, without the prefix); the environment wins over the file.  With
``LABWITNESS_CONFIG`` unset, ``/etc/labwitness/labwitness.toml`` is read when it
exists (what ``labwitness init`` writes by default, :data:`DEFAULT_CONFIG`);
``LABWITNESS_CONFIG=""`` reads no file at all.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.db import sqlite_url
from index.tokens import MIN_TOKEN_CHARS
from labwitness.errors import ConfigError, LabwitnessError
from labwitness.segment_limits import MAX_TARGET_SECONDS
from retention.capacity import DEFAULT_MAX_CAMERAS_PER_NODE
from retention.policy import RetentionPolicy, validate as validate_retention
from retention.runs import JobsConfig
from retention.witness import RetryPolicy, WitnessThresholds
from retention.witness_config import check_specs as check_witness_specs

#: a node's roles (docs/cluster.md): what ``labwitness serve --roles`` accepts
ROLES = ("api", "recorder", "jobs")


#: the config file read when LABWITNESS_CONFIG is unset and this file exists (``labwitness init``'s default)
DEFAULT_CONFIG = Path("/etc/labwitness/labwitness.toml")


def config_path() -> Path | None:
    """The config file this process reads: LABWITNESS_CONFIG, else DEFAULT_CONFIG when it exists."""
    cfg = os.environ.get("LABWITNESS_CONFIG")
    if cfg is not None:
        return Path(cfg) if cfg else None
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABWITNESS_", extra="ignore")

    data_dir: Path = Path(".labwitness")
    database_url: str | None = None  # default: SQLite under data_dir
    spool_dir: Path | None = None  # default: data_dir/spool
    spool_max_bytes: int | None = None
    spool_reserve_bytes: int = 256 * 1024 * 1024

    s3_endpoint: str | None = None  # unset -> embedded SeaweedFS
    # an external endpoint's keys, required with it; the embedded store generates and keeps its own
    # (storage.seaweed_secrets), so no credential is a default anywhere
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "labwitness-footage"
    s3_secure: bool | None = None
    s3_region: str | None = None
    allow_unenforced_retention: bool = False

    segment_seconds: float = 60.0
    # the first segment each camera's recorder cuts, seconds (0: segment_seconds); the demo's is short
    # so that stored footage shows seconds after it starts
    first_segment_seconds: float = 0.0
    rtsp_open_timeout_s: float = 10.0
    rtsp_read_timeout_s: float = 10.0
    # RTSP client of the recorder: "native" (recorder.rtsp_native, about half the CPU; falls back to FFmpeg's
    # per camera for rtsps:// or a session it cannot set up) or "ffmpeg" (FFmpeg's, through PyAV)
    rtsp_client: Literal["ffmpeg", "native"] = "native"
    backoff_cap_s: float = 10.0
    retention_months: int = RetentionPolicy.months
    retention_margin_days: int = RetentionPolicy.margin_days
    timezone: str = "Asia/Shanghai"
    # This node's name in the cluster (docs/cluster.md): leases, cluster_node rows and every segment it
    # writes carry it.  ``recorder_id`` is its old name and still accepted (LABWITNESS_RECORDER_ID).
    node_id: str = Field(default_factory=lambda: socket.gethostname()[:48] or "recorder", min_length=1, max_length=48,
                         pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    recorder_id: str | None = None  # deprecated alias of node_id
    # What this node runs (docs/cluster.md, "roles"): api (HTTP API and UI), recorder (cameras whose lease it
    # holds), jobs (retention jobs, exports).  A node without "api" still serves /healthz and /metrics.
    roles: str = "api,recorder,jobs"
    # Camera leases (PostgreSQL only; docs/cluster.md "failover arithmetic"): a lease not renewed for
    # lease_seconds is free to claim; holders renew every lease_renew_seconds.  Failover after a SIGKILL
    # takes at most lease_seconds + lease_renew_seconds + the camera's reconnect.
    lease_seconds: float = Field(default=8.0, ge=2.0, le=600.0)
    lease_renew_seconds: float = Field(default=2.0, gt=0, le=120.0)
    max_cameras_per_node: int = Field(default=DEFAULT_MAX_CAMERAS_PER_NODE, ge=1, le=10_000)  # one figure for plan
    bootstrap_admin_token: SecretStr | None = None
    credentials_key: SecretStr | None = None  # Fernet key for camera passwords (see api.secrets)

    report_margin_s: int = Field(default=300, ge=0, le=3600)  # footage before/after a test
    # clips listed per camera window in GET /reports/{no}/footage; the rest by page (decision 48)
    report_clip_page: int = Field(default=20, ge=0, le=10_000)
    # ... and at most about this many in the whole response, shared by its windows (decision 57)
    report_clip_budget: int = Field(default=500, ge=1, le=100_000)
    max_record_hours: int = Field(default=72, ge=1, le=24 * 31)  # longest test window accepted
    discovery_port: int = 3702  # WS-Discovery (multicast group 239.255.255.250)
    discovery_interfaces: str = ""  # comma-separated IPv4 addresses to probe from; empty = every interface that is up

    # content health: one keyframe per N s
    content_sample_seconds: float = Field(default=JobsConfig.content_sample_seconds, ge=1.0, le=600.0)

    # Storage capacity for the runway in health (bytes).  Unset: the free space of the
    # embedded SeaweedFS's disk; with an external S3 endpoint, unknown unless set.
    storage_capacity_bytes: int | None = Field(default=None, ge=1)
    # what QR codes on evidence packages point at; unset: what serve/demo announced in DATA_DIR/installation.json,
    # else http://127.0.0.1:8000 (read it through api.installation.public_base_url)
    public_base_url: str | None = None

    # Retention jobs (docs/retention.md); an interval of 0 disables that job in `serve`.  Each field
    # of retention.runs.JobsConfig named here comes from LABWITNESS_*, with JobsConfig's default.
    retention_jobs: bool = True  # run them on a schedule inside `serve`
    sweep_interval_h: float = Field(default=JobsConfig.sweep_interval_h, ge=0)
    verify_interval_h: float = Field(default=JobsConfig.verify_interval_h, ge=0)
    integrity_interval_h: float = Field(default=JobsConfig.integrity_interval_h, ge=0)
    reconcile_interval_h: float = Field(default=JobsConfig.reconcile_interval_h, ge=0)
    content_interval_h: float = Field(default=JobsConfig.content_interval_h, ge=0)  # content health sampling of new footage
    seal_interval_h: float = Field(default=JobsConfig.seal_interval_h, ge=0)  # signed Merkle seals (retention.seals)
    seal_grace_min: float = Field(default=JobsConfig.seal_grace_min, ge=0)  # health: seal late after 2 x interval + this
    sweep_max_share: float = Field(default=JobsConfig.sweep_max_share, gt=0, le=1)  # of one camera's footage per sweep
    sweep_max_clock_skew_s: float = Field(default=JobsConfig.sweep_max_clock_skew_s, gt=0)  # our clock vs the store's
    verify_sample: int = Field(default=JobsConfig.verify_sample, ge=1)
    integrity_budget_bytes: int = Field(default=JobsConfig.integrity_budget_bytes, ge=1)
    integrity_budget_objects: int = Field(default=JobsConfig.integrity_budget_objects, ge=1)

    # the journal (retention.journal): how often the index's outbox is written to a journal/ object
    journal_interval_s: float = Field(default=60.0, gt=0, le=3600)

    # The export queue (docs/jobs.md): workers on every jobs node claim queued exports.
    export_workers: int = Field(default=1, ge=0, le=16)  # per jobs node; 0: this node builds none
    export_poll_s: float = Field(default=1.0, gt=0, le=60)  # how often an idle worker looks for work
    export_heartbeat_s: float = Field(default=5.0, gt=0, le=300)
    #: a running export whose heartbeat is older than this is claimed by another worker
    export_stale_s: float = Field(default=30.0, gt=0, le=3600)
    export_max_attempts: int = Field(default=3, ge=1, le=20)  # claims before an export is failed for good
    # health warns when the oldest unfinished export (queued or being built) was requested longer ago than this
    export_queue_warning_s: float = Field(default=1800.0, gt=0)

    # Witnesses outside the box that receive every seal (docs/witnesses.md): a list of entries like
    # {kind = "s3", name = "...", endpoint = ..., bucket = ..., access_key_file = ..., secret_key_file = ...} or
    # {kind = "https", url = ..., token_file = ..., ca_file = ...}; in the environment as JSON
    witnesses: list[dict[str, Any]] = Field(default_factory=list)
    witness_warning_s: float = Field(default=WitnessThresholds.warning_s, gt=0)  # oldest undelivered: warning
    witness_critical_s: float = Field(default=WitnessThresholds.critical_s, gt=0)  # ... critical
    witness_retry_cap_s: float = Field(default=RetryPolicy.cap_s, gt=0)  # longest wait between tries

    host: str = "127.0.0.1"
    port: int = 8000
    # reverse proxy (deploy/README.md): the addresses whose X-Forwarded-For/-Proto uvicorn believes, comma-separated
    # ("127.0.0.1" for a proxy on this host); empty: none -- the client address is the TCP peer's, always
    forwarded_allow_ips: str = ""
    # TLS without a proxy: serve https with this certificate chain and key (PEM), both or neither
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # also log to LOG_DIR/labwitness.log (besides stderr, i.e. the journal under systemd)
    log_dir: Path | None = None
    # the embedded store (no S3 endpoint): "child" -- serve runs weed itself; "separate" -- `labwitness store`
    # runs it (its own systemd unit, deploy/systemd/) and every other command only attaches to it
    embedded_store: Literal["child", "separate"] = "child"

    @field_validator("segment_seconds")
    @classmethod
    def _segment_positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"LABWITNESS_SEGMENT_SECONDS must be > 0 (got {v})")
        if v > MAX_TARGET_SECONDS:  # the index's queries rely on segments being short (labwitness.segment_limits)
            raise ValueError(f"LABWITNESS_SEGMENT_SECONDS must be <= {MAX_TARGET_SECONDS} (got {v})")
        return v

    @field_validator("bootstrap_admin_token")
    @classmethod
    def _bootstrap_token_long(cls, v: SecretStr | None) -> SecretStr | None:
        # refused at start-up, before anything runs: a short admin token can be guessed
        if v is not None and len(v.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"LABWITNESS_BOOTSTRAP_ADMIN_TOKEN 过短：至少 {MIN_TOKEN_CHARS} 个字符 / is too short: at least "
                f"{MIN_TOKEN_CHARS} characters (got {len(v.get_secret_value())}); generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return v

    @field_validator("witnesses")
    @classmethod
    def _witnesses(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        check_witness_specs(v)  # a ConfigError naming the entry, at start-up
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: str) -> str:
        roles = [r.strip() for r in v.split(",") if r.strip()]
        unknown = sorted(set(roles) - set(ROLES))
        if not roles or unknown:
            raise ConfigError(f"未知或空的节点角色 / unknown or empty node roles {v!r}: use a comma-separated subset of "
                              f"{','.join(ROLES)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        return ",".join(r for r in ROLES if r in roles)

    @model_validator(mode="after")
    def _node_id_alias(self) -> "Settings":
        # LABWITNESS_RECORDER_ID (before issue 16) names the node when LABWITNESS_NODE_ID is not set
        if self.recorder_id and "node_id" not in self.model_fields_set:
            self.node_id = self.recorder_id
        self.recorder_id = self.node_id
        return self

    @model_validator(mode="after")
    def _first_segment(self) -> "Settings":
        if not 0 <= self.first_segment_seconds <= self.segment_seconds:
            raise ConfigError(f"LABWITNESS_FIRST_SEGMENT_SECONDS must be 0 (as long as the others) up to "
                              f"LABWITNESS_SEGMENT_SECONDS ({self.segment_seconds:g}), got {self.first_segment_seconds:g}")
        return self

    @model_validator(mode="after")
    def _lease_timing(self) -> "Settings":
        if self.lease_renew_seconds * 2 > self.lease_seconds:
            raise ConfigError(f"LABWITNESS_LEASE_RENEW_SECONDS ({self.lease_renew_seconds}) 须不超过租约的一半 / must be at "
                              f"most half of LABWITNESS_LEASE_SECONDS ({self.lease_seconds}): a holder must renew at least "
                              "twice per lease, or one slow renewal loses its cameras")
        return self

    @model_validator(mode="after")
    def _retention(self) -> "Settings":
        validate_retention(self.retention_months, self.retention_margin_days)
        return self

    @model_validator(mode="after")
    def _export_heartbeat(self) -> "Settings":
        if self.export_stale_s < 2 * self.export_heartbeat_s:
            raise ConfigError(
                f"LABWITNESS_EXPORT_STALE_S ({self.export_stale_s:g}) 至少应为心跳间隔的两倍 / must be at least twice "
                f"LABWITNESS_EXPORT_HEARTBEAT_S ({self.export_heartbeat_s:g}): a live export worker would otherwise be "
                "taken for dead and its export built twice")
        return self

    @model_validator(mode="after")
    def _external_store_credentials(self) -> "Settings":
        if self.s3_endpoint and not (self.s3_access_key and self.s3_secret_key and self.s3_secret_key.get_secret_value()):
            missing = [n for n, v in (("LABWITNESS_S3_ACCESS_KEY", self.s3_access_key),
                                      ("LABWITNESS_S3_SECRET_KEY", self.s3_secret_key and self.s3_secret_key.get_secret_value()))
                       if not v]
            raise ConfigError(
                f"外部对象存储 {self.s3_endpoint} 缺少凭据：请设置 {'、'.join(missing)} / the external S3 endpoint "
                f"{self.s3_endpoint} needs credentials: set {' and '.join(missing)} (the access key the store "
                "issued for labwitness; there is no default)")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> "Settings":
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("LABWITNESS_SSL_CERTFILE 与 LABWITNESS_SSL_KEYFILE 需同时设置 / LABWITNESS_SSL_CERTFILE and "
                              "LABWITNESS_SSL_KEYFILE go together (the certificate chain and its private key, PEM)")
        return self

    @property
    def role_set(self) -> frozenset[str]:
        """The roles this node runs: a subset of :data:`ROLES`."""
        return frozenset(r for r in self.roles.split(",") if r)

    @property
    def discovery_ifaces(self) -> list[str] | None:
        return [x.strip() for x in self.discovery_interfaces.split(",") if x.strip()] or None

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    @property
    def samples_path(self) -> Path:
        """Sub-stream pictures waiting for the content job (labwitness.picture_samples): not footage."""
        return self.data_dir / "samples"

    def jobs_config(self) -> JobsConfig:
        """The retention jobs' schedule and limits: every :class:`JobsConfig` field set here."""
        return JobsConfig(**{f.name: getattr(self, f.name) for f in fields(JobsConfig) if f.name in type(self).model_fields})

    @property
    def db_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "index.sqlite3")


def load_settings(config_file: Path | None = None, **overrides) -> Settings:
    """Settings from file (:func:`config_path`) < environment < explicit overrides.

    Any invalid value becomes a :class:`ConfigError` whose message names the key.
    """
    file_values: dict = {}
    cfg = config_file or config_path()
    if cfg is not None:
        try:
            file_values = tomllib.loads(Path(cfg).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"配置文件无法读取 / cannot read config file {cfg}: {e}") from e
    env_keys = {k[len("LABWITNESS_"):].lower() for k in os.environ if k.startswith("LABWITNESS_")}
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**init)
    except ValidationError as e:
        for err in e.errors():
            exc = (err.get("ctx") or {}).get("error")
            if isinstance(exc, LabwitnessError):
                raise exc from None
        lines = [f"{'.'.join(map(str, er['loc'])) or 'settings'}: {er['msg']}" for er in e.errors()]
        raise ConfigError("配置无效 / invalid configuration: " + "; ".join(lines)) from None
