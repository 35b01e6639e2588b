"""``labwitness init``: write an installation, and never change what one already holds.

What it makes, each only when missing (otherwise it says "kept"):

- the config file (default ``/etc/labwitness/labwitness.toml``): directories,
  database URL -- *no secret*: every key lives in its own 0600 file in the data
  directory, where the service already reads it (docs/decisions.md, "Secrets in
  files, not in the config");
- the data, spool and log directories, 0700, owned by the service user (``--user``);
- the secrets: the embedded store's S3 identity, gRPC certificates and JWT keys
  (:mod:`storage.seaweed_secrets`), the camera-password key (``credentials.key``),
  the signing key (``signing.key``), the audit MAC key (``audit-mac.key``);
- the bucket with Object Lock (the store started for the purpose, or attached to);
- the database, migrated to the newest revision;
- a bootstrap admin token: created in the database as its SHA-256 only, the plain
  token returned once for the console and never written anywhere.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from api.evidence import SigningKey
from api.keyring import published_keys
from api.secrets import AUDIT_KEY_FILE, CredentialCipher, audit_key
from api.settings import Settings, load_settings
from index.audit import AuditLog
from index.db import make_engine
from index.migrate import current, upgrade
from index.tokens import TokenStore
from labwitness.clock import SystemClock, utc_ms
from labwitness.errors import ConfigError
from labwitness.private_fs import private_dir
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed
from storage.seaweed_secrets import IDENTITY_FILE, SECURITY_FILE, ensure_credentials, ensure_security


@dataclass
class InitReport:
    config: Path
    #: (what, path or detail, "created" | "kept")
    steps: list[tuple[str, str, str]] = field(default_factory=list)
    #: the plain bootstrap admin token, when this run created it (shown once, stored nowhere)
    bootstrap_token: str | None = None

    def add(self, what: str, where: object, created: bool) -> None:
        self.steps.append((what, str(where), "created" if created else "kept"))


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> "ServiceUser":
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(f"系统用户 {name} 不存在 / the service user {name!r} does not exist: create it first with "
                              f"useradd --system --no-create-home --shell /usr/sbin/nologin {name}") from None
        return cls(name, pw.pw_uid, pw.pw_gid)

    def own(self, path: Path) -> None:
        """``path`` and everything under it becomes the service user's (only what this run created)."""
        for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
            os.lchown(p, self.uid, self.gid)


def _toml_value(v: object) -> str:
    s = str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(values: dict[str, object]) -> str:
    lines = ["# labwitness installation (written by `labwitness init`; docs: deploy/README.md)",
             "# Every LABWITNESS_* setting may be set here in lower case without the prefix; the environment wins.",
             "# No secret lives here: the keys are 0600 files in data_dir (back them up with it).", ""]
    lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    lines += ["", "# host = \"127.0.0.1\"            # behind a reverse proxy on this host (deploy/README.md)",
              "# port = 8000",
              "# forwarded_allow_ips = \"127.0.0.1\"  # the proxy's address: X-Forwarded-* believed from it only",
              "# ssl_certfile = \"/etc/labwitness/tls/fullchain.pem\"  # https without a proxy",
              "# ssl_keyfile = \"/etc/labwitness/tls/privkey.pem\"", ""]
    return "\n".join(lines)


def write_config(path: Path, values: dict[str, object], user: ServiceUser | None) -> bool:
    """Write the config file unless it exists; True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    # readable by the service (its group) and root; written by root only: the service cannot rewrite its own config
    mode = 0o640 if user is not None and os.geteuid() == 0 else 0o600
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(config_text(values))
    if user is not None and os.geteuid() == 0:
        os.chown(path, 0, user.gid)
    return True


def _dir(report: InitReport, what: str, path: Path, user: ServiceUser | None, created: list[Path]) -> None:
    existed = path.exists()
    if not existed:
        private_dir(path)
        created.append(path)
    report.add(what, path, not existed)


def _secret(report: InitReport, what: str, path: Path, make, created: list[Path]) -> None:
    existed = path.exists()
    make()
    if not existed:
        created.append(path)
    report.add(what, path, not existed)


def init_installation(config: Path, *, data_dir: Path | None = None, spool_dir: Path | None = None,
                      log_dir: Path | None = None, database_url: str | None = None,
                      user: str | None = None) -> InitReport:
    """Make what is missing of the installation configured by ``config``; keep the rest."""
    service_user = ServiceUser.lookup(user) if user else None
    report = InitReport(config)
    values = {"data_dir": data_dir and data_dir.absolute(), "spool_dir": spool_dir and spool_dir.absolute(),
              "log_dir": log_dir and log_dir.absolute(), "database_url": database_url}
    report.add("config / 配置文件", config, write_config(config, values, service_user))
    settings = load_settings(config_file=config)
    created: list[Path] = []
    _dir(report, "data directory / 数据目录", settings.data_dir, service_user, created)
    _dir(report, "spool directory / 缓存目录", settings.spool_path, service_user, created)
    if settings.log_dir is not None:
        _dir(report, "log directory / 日志目录", settings.log_dir, service_user, created)
    d = settings.data_dir
    if settings.s3_endpoint is None:
        store_dir = d / "seaweedfs"
        store_new = not (store_dir / IDENTITY_FILE).exists()
        _secret(report, "embedded store S3 credentials / 内置存储凭据", store_dir / IDENTITY_FILE,
                lambda: ensure_credentials(store_dir), created)
        _secret(report, "embedded store keys and certificates / 内置存储密钥与证书", store_dir / SECURITY_FILE,
                lambda: ensure_security(store_dir), created)
        if store_new:
            created.append(store_dir)
    if settings.credentials_key is None:
        _secret(report, "camera password key / 摄像机密码密钥", d / "credentials.key",
                lambda: CredentialCipher.from_settings(None, d), created)
    else:
        report.add("camera password key / 摄像机密码密钥", "LABWITNESS_CREDENTIALS_KEY", False)
    _secret(report, "signing key / 签名密钥", d / "signing.key", lambda: published_keys(d, SigningKey.load(d)), created)
    created.append(d / "signing-keys.json")
    _secret(report, "audit MAC key / 审计密钥", d / AUDIT_KEY_FILE, lambda: audit_key(d), created)
    _bucket(report, settings, created)
    _database(report, settings, created)
    if service_user is not None:
        for p in created:
            if p.exists():
                service_user.own(p)
    return report


def _bucket(report: InitReport, settings: Settings, created: list[Path]) -> None:
    """The bucket with Object Lock: the embedded store is started for the purpose (or attached to)."""
    sw = None
    if settings.s3_endpoint is None:
        sw = EmbeddedSeaweed(settings.data_dir / "seaweedfs")
        sw.start()
        endpoint, access, secret = sw.endpoint, sw.access_key, sw.secret_key
    else:
        endpoint, access = settings.s3_endpoint, settings.s3_access_key or ""
        secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else ""
    try:
        store = S3ObjectStore(endpoint, access, secret, settings.s3_bucket, secure=settings.s3_secure,
                              region=settings.s3_region, allow_unenforced=settings.allow_unenforced_retention)
        existed = store.client.bucket_exists(settings.s3_bucket)
        store.check(create=True)
        report.add("bucket with Object Lock / 对象锁定存储桶", f"{endpoint}/{settings.s3_bucket}", not existed)
    finally:
        if sw is not None:
            sw.stop()
            created.append(settings.data_dir / "seaweedfs")  # weed's own files, made by this run's process


def _database(report: InitReport, settings: Settings, created: list[Path]) -> None:
    if settings.database_url is None:
        created.extend(settings.data_dir / f"index.sqlite3{s}" for s in ("", "-wal", "-shm", "-journal"))
    engine = make_engine(settings.db_url)
    try:
        before = current(engine)
        upgrade(engine)
        after = current(engine)
        report.add("database / 数据库", f"revision {after}" + (f" (was {before})" if before != after else ""),
                   before != after)
        tokens = TokenStore(engine, lambda: utc_ms(SystemClock().now()))
        if tokens.any():
            report.add("bootstrap admin token / 初始管理员令牌", "a token exists", False)
            return
        _, plain = tokens.create("bootstrap-admin", "admin", "init")
        AuditLog(engine, tokens.now_ms, audit_key(settings.data_dir)).append("system", "token.bootstrap", "bootstrap-admin",
                                                                             {"by": "labwitness init"})
        report.bootstrap_token = plain
        report.add("bootstrap admin token / 初始管理员令牌", "shown below once; only its hash is stored", True)
    finally:
        engine.dispose()
