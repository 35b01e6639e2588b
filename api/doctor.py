"""``labwitness doctor``: check an installation and say what to fix.

One :class:`Finding` per check, each ``ok``, ``warning``, ``error`` or ``unknown``
(a check that could not tell, e.g. no clock tool on the host: reported, counted
as a warning).  Exit code (deploy/README.md): 0 all ok, 1 a warning or unknown,
2 an error -- the check commands' scale (api.cli.common), "critical" being an error.

The checks: files and permissions; S3 reachable with these credentials, the
bucket with Object Lock, versioning and a COMPLIANCE default, and the credentials
unable to delete or shorten a locked version (:mod:`storage.lock_probe`); the
database reachable and at the newest migration; the spool's free space against
the cameras' recent bitrates; the host clock synchronised; every enabled camera
answering RTSP OPTIONS; the serve port free (or held by this labwitness).
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from api.doctor_host import clock_sync, port_status, rtsp_options
from api.settings import Settings
from index.bitrates import recent_bitrates
from index.db import make_engine
from index.migrate import alembic_config, current
from index.registry import Registry
from labwitness.errors import LabwitnessError, ObjectLockError
from storage.lock_probe import probe_lock
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

LEVELS = ("ok", "unknown", "warning", "error")
#: spool free space, in hours of every camera's recording, below which doctor warns / calls it an error
SPOOL_WARN_H, SPOOL_ERROR_H = 24.0, 2.0
CHECKS = ("files", "storage", "database", "spool", "clock", "cameras", "port")


@dataclass(frozen=True)
class Finding:
    check: str
    level: str
    message: str
    fix: str = ""


def exit_code(findings: list[Finding]) -> int:
    levels = {f.level for f in findings}
    return 2 if "error" in levels else 1 if levels & {"warning", "unknown"} else 0


def as_json(findings: list[Finding]) -> dict:
    return {"exit_code": exit_code(findings), "checks": [asdict(f) for f in findings]}


class Doctor:
    def __init__(self, settings: Settings, *, skip: frozenset[str] = frozenset(),
                 clock: Callable[[], tuple[str, str]] = clock_sync) -> None:
        self.s = settings
        self.skip = skip
        self.clock = clock
        self.findings: list[Finding] = []
        self.engine = None

    def add(self, check: str, level: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(check, level, message, fix))

    def run(self) -> list[Finding]:
        with ExitStack() as stack:
            for name in CHECKS:
                if name in self.skip:
                    self.add(name, "ok", "skipped (--skip) / 已跳过")
                    continue
                try:
                    getattr(self, f"check_{name}")(stack)
                except Exception as e:  # a check that broke says so; the others still run
                    self.add(name, "error", f"检查失败 / the check failed: {e}")
        return self.findings

    # -- files -----------------------------------------------------------------
    def check_files(self, stack: ExitStack) -> None:
        d = self.s.data_dir
        if not d.is_dir():
            self.add("files", "error", f"数据目录不存在 / data directory {d} does not exist", "labwitness init")
            return
        loose = [str(p) for p in (d, self.s.spool_path, self.s.log_dir) if p is not None and p.is_dir()
                 and p.stat().st_mode & 0o077]
        secrets = [d / n for n in ("credentials.key", "signing.key", "audit-mac.key", "seaweedfs/s3-identity.json")]
        loose += [str(p) for p in secrets if p.is_file() and p.stat().st_mode & 0o077]
        missing = [p.name for p in secrets[1:3] if not p.is_file()]
        if missing:
            self.add("files", "error", f"缺少密钥 / missing keys in {d}: {', '.join(missing)}",
                     "labwitness init (or restore them from the backup)")
        elif loose:
            self.add("files", "warning", f"权限过宽 / readable by others: {', '.join(loose)}",
                     "chmod 0700 on directories, 0600 on key files")
        else:
            self.add("files", "ok", f"{d}: directories 0700, keys 0600")

    # -- storage ---------------------------------------------------------------
    def _endpoint(self, stack: ExitStack) -> tuple[str, str, str]:
        s = self.s
        if s.s3_endpoint:
            return s.s3_endpoint, s.s3_access_key or "", s.s3_secret_key.get_secret_value() if s.s3_secret_key else ""
        sw = EmbeddedSeaweed(s.data_dir / "seaweedfs")
        if s.embedded_store == "separate":
            sw.attach(timeout=10)
        else:  # attach to the running service's store, else run one for the check
            owner = s.data_dir.stat()
            sw.start()
            stack.callback(_give_back, sw.data_dir, owner.st_uid, owner.st_gid)  # runs after stop (LIFO)
            stack.callback(sw.stop)
        return sw.endpoint, sw.access_key, sw.secret_key

    def check_storage(self, stack: ExitStack) -> None:
        s = self.s
        try:
            endpoint, access, secret = self._endpoint(stack)
            store = S3ObjectStore(endpoint, access, secret, s.s3_bucket, secure=s.s3_secure, region=s.s3_region,
                                  timeout_s=5)
            store.check(create=False)
            lock = store.lock_config()
        except ObjectLockError as e:
            self.add("storage", "error", str(e), "use a bucket created with Object Lock (LABWITNESS_S3_BUCKET)")
            return
        except LabwitnessError as e:
            self.add("storage", "error", f"对象存储不可用 / object store not usable: {e}",
                     "start the store (systemctl start labwitness-store), check the endpoint and the keys, "
                     "or run labwitness init to create the bucket")
            return
        if lock.mode != "COMPLIANCE" or not lock.days:
            self.add("storage", "warning", f"存储桶默认保留不是 COMPLIANCE / bucket {s.s3_bucket} default retention is "
                     f"{lock.mode or 'none'} {lock.days or ''}d (each object still gets its own COMPLIANCE lock)",
                     "set a COMPLIANCE default retention on the bucket")
        try:
            probe = probe_lock(store.client, s.s3_bucket)
        except Exception as e:
            self.add("storage", "error", f"锁定探测失败 / the lock probe could not be written: {e}",
                     "the service's credentials need write access to the bucket")
            return
        if not probe.ok:
            self.add("storage", "error", f"凭据可删除或缩短锁定 / these credentials could "
                     f"{'delete a locked version' if not probe.delete_refused else ''}"
                     f"{' and ' if not (probe.delete_refused or probe.shorten_refused) else ''}"
                     f"{'shorten a retention' if not probe.shorten_refused else ''} ({probe.key}: {probe.detail})",
                     "the bucket must be in COMPLIANCE mode on a store that enforces it")
            return
        if lock.mode == "COMPLIANCE" and lock.days:
            self.add("storage", "ok", f"{endpoint}/{s.s3_bucket}: Object Lock COMPLIANCE {lock.days}d default; "
                     f"delete and shorten refused (probe {probe.key})")

    # -- database --------------------------------------------------------------
    def check_database(self, stack: ExitStack) -> None:
        from alembic.script import ScriptDirectory

        engine = make_engine(self.s.db_url)
        stack.callback(engine.dispose)
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        try:
            rev = current(engine)
        except Exception as e:
            self.add("database", "error", f"数据库不可达 / database unreachable: {type(e).__name__}: {str(e)[:200]}",
                     "start the database, check LABWITNESS_DATABASE_URL")
            return
        self.engine = engine
        if rev not in heads:
            self.add("database", "error", f"数据库迁移未完成 / database at revision {rev}, newest is "
                     f"{', '.join(sorted(heads))}", "labwitness db upgrade")
        else:
            self.add("database", "ok", f"reachable, revision {rev} (newest)")

    # -- spool -----------------------------------------------------------------
    def _bitrate(self) -> tuple[float, int] | None:
        """Bytes per second of all enabled cameras over the last day's segments, and how many cameras."""
        if self.engine is None:
            return None
        rates = recent_bitrates(self.engine, int(time.time() * 1000) - 24 * 3600 * 1000)
        return sum(rates.values()), len(rates)

    def check_spool(self, stack: ExitStack) -> None:
        spool = self.s.spool_path
        if not spool.is_dir():
            self.add("spool", "error", f"缓存目录不存在 / spool directory {spool} does not exist", "labwitness init")
            return
        free = shutil.disk_usage(spool).free - self.s.spool_reserve_bytes
        measured = self._bitrate()
        if not measured or not measured[0]:
            self.add("spool", "ok", f"{spool}: {free / 1e9:.1f} GB free; no recent segments to measure bitrates yet")
            return
        rate, n = measured
        hours = max(free, 0) / rate / 3600
        msg = f"{spool}: {free / 1e9:.1f} GB free = {hours:.1f} h of {n} cameras at {rate * 8 / 1e6:.1f} Mbit/s"
        if hours < SPOOL_ERROR_H:
            self.add("spool", "error", f"缓存空间不足 / spool too small: {msg}", "free disk space or move the spool")
        elif hours < SPOOL_WARN_H:
            self.add("spool", "warning", f"缓存空间不足一天 / spool holds less than a day: {msg}",
                     "give the spool a disk that holds a day of every camera (storage outages)")
        else:
            self.add("spool", "ok", msg)

    # -- host ------------------------------------------------------------------
    def check_clock(self, stack: ExitStack) -> None:
        # this host's clock dates its footage and gaps and is the sweep's "now" (checked against witnesses);
        # camera leases and node liveness do not depend on it (the database's clock, docs/cluster.md)
        level, msg = self.clock()
        fix = {"warning": "enable NTP: chronyd or systemd-timesyncd (timedatectl set-ntp true)",
               "unknown": "install chrony, or check the clock by hand"}.get(level, "")
        self.add("clock", level, {"ok": "", "warning": "时钟未同步，录像时间以本机时钟为准 / clock not synchronised "
                                                       "(footage is dated by this host's clock): ",
                                  "unknown": "时钟同步状态未知 / clock synchronisation unknown: "}.get(level, "") + msg, fix)

    def check_cameras(self, stack: ExitStack) -> None:
        if self.engine is None:
            self.add("cameras", "unknown", "数据库不可达，未检查 / database unreachable: cameras not checked")
            return
        cams = [(c.id, c.rtsp_url) for c in Registry(self.engine, lambda: 0).cameras(enabled_only=True)]
        bad = []
        for cid, url in cams:
            level, msg = rtsp_options(url)
            if level != "ok":
                bad.append(f"{cid}: {msg}")
        if bad:
            self.add("cameras", "error", "摄像机不可达 / cameras unreachable: " + "; ".join(bad),
                     "check the camera's power, network and RTSP port, or disable it (labwitness camera ...)")
        else:
            self.add("cameras", "ok", f"{len(cams)} enabled cameras answer RTSP OPTIONS")

    def check_port(self, stack: ExitStack) -> None:
        level, msg = port_status(self.s.host, self.s.port, https=self.s.ssl_certfile is not None)
        self.add("port", level, msg if level == "ok" else f"端口被占用 / port in use: {msg}",
                 "" if level == "ok" else "stop that program or set port in the config")


def _give_back(store_dir: Path, uid: int, gid: int) -> None:
    """doctor run by root on a service user's installation: weed's files it wrote become the service's again."""
    if os.geteuid() != 0 or uid == 0:
        return
    for p in [store_dir, *store_dir.rglob("*")]:
        try:
            if p.lstat().st_uid == 0:
                os.lchown(p, uid, gid)
        except FileNotFoundError:
            pass


def findings_for_bad_config(e: Exception, config: Path | None) -> list[Finding]:
    return [Finding("config", "error", f"配置无效 / invalid configuration ({config or 'environment'}): {e}",
                    "fix the named key in the config file")]
