"""The export job: builds, holds, signs and stores one evidence package (see api.evidence;
the export -> hold -> release procedure with its crash points is in docs/exports.md).

A request only *queues* the package (:meth:`Exporter.start`, on any API node); an export
worker (:mod:`api.export_worker`, on the jobs nodes) claims it from the queue in the
index (:class:`index.exports.ExportStore`) and runs :meth:`Exporter.run`.  Every write
of a run is fenced by its claim, so a worker given up for dead cannot change a package
another worker has taken over.  The build is deterministic for the same footage: the
manifest's ``created_at`` is the request's time and the zip members carry it, so a
package rebuilt after its worker died equals the one the dead worker would have made."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import quote

from index.audit import AuditLog
from index.exports import Claim, ExportStore
from index.models import ExportPackage
from index.queries import IndexStore
from index.records import RecordStore, record_content
from index.seals import SealStore
from index.tiling import NOTHING_SPOOLED, spans_coverage
from labwitness.clock import Clock, from_ms, utc_ms
from labwitness.errors import LabwitnessError
from labwitness.ids import check_number, file_slug
from recorder.spool_view import SpoolReader
from retention.policy import RetentionPolicy
from storage.base import ObjectStore
from storage.hashing import file_sha256
from storage.layout import iso_ms

from api import installation
from api.evidence import MANIFEST, PUBKEY, QR, SIGNATURE, ExportError, SigningKey, qr_png
from api.export_checks import WindowFacts, export_warnings
from api.holds import place_holds, release_holds
from api.keyring import published_keys
from api.media import stitch
from api.seal_proofs import attach_proofs, seal_summary
from api.settings import Settings

log = logging.getLogger(__name__)

#: a running export whose heartbeat stopped this long ago and that no worker will claim
#: again (out of attempts, or from before the queue) died with its process; the next
#: recovery releases what it held
STALE_EXPORT_MS = 30 * 60_000
#: statuses of a package still to be built or being built
PENDING = ("queued", "running")


class LostClaim(ExportError):
    """This worker's claim on an export was taken over (it was given up for dead)."""


class Heartbeat:
    """Beats a claimed export's ``heartbeat_at_ms`` every ``interval_s`` from its own thread
    (a slow storage read between two progress writes must not look like a dead worker)."""

    def __init__(self, exports: ExportStore, claim: Claim, interval_s: float) -> None:
        self.exports, self.claim, self.interval_s = exports, claim, interval_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"export-beat-{claim.package_id[:8]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.exports.beat(self.claim):
                    self.lost = True
                    return
            except LabwitnessError as e:  # the index is away: the next beat tries again
                log.warning("export %s: heartbeat not written: %s", self.claim.package_id, e)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def zip_time(ms: int) -> tuple[int, int, int, int, int, int]:
    """A zip member's timestamp (zip keeps local time to 2 s; we write UTC) from epoch ms."""
    t = from_ms(ms)
    return (max(1980, t.year), t.month, t.day, t.hour, t.minute, t.second // 2 * 2)


def add_member(z: zipfile.ZipFile, name: str, body: bytes | Path, when: tuple[int, ...]) -> None:
    """A stored (uncompressed) member with a fixed timestamp and mode: the same inputs give the same bytes."""
    info = zipfile.ZipInfo(name, date_time=when)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    if isinstance(body, Path):
        info.file_size = body.stat().st_size
        with open(body, "rb") as src, z.open(info, "w", force_zip64=info.file_size >= 1 << 31) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    else:
        z.writestr(info, body)


def package_file_name(report_no: str, package_id: str) -> str:
    """``evidence-{slug}-{id}.zip``: never the raw number (it may hold '/', CJK, spaces)."""
    return f"evidence-{file_slug(report_no)}-{package_id[:8]}.zip"


def public_error(e: BaseException) -> str:
    """What a failed job shows people: our own errors' messages (written for them);
    anything else, which may carry server paths or internals, only as a reference
    that the log also has (the caller logs it with the traceback)."""
    if isinstance(e, LabwitnessError):
        return str(e)[:2000]
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        # something an admin can act on; the path in the error stays in the log
        return ("导出失败：服务器上生成导出的临时磁盘空间已满，请释放空间（或将 TMPDIR 指向更大的磁盘）后重新导出 / "
                "export failed: the server's disk where exports are built (its temporary directory) is full; "
                "free space there, or point TMPDIR to a larger disk, then export again")
    ref = uuid.uuid4().hex[:12]
    e.add_note(f"error ref {ref}")  # the traceback in the log carries the reference
    return f"导出失败：内部错误（编号 {ref}，详见服务日志） / export failed: internal error (ref {ref}; see the service log)"


class Exporter:
    def __init__(self, settings: Settings, clock: Clock, store: ObjectStore, index: IndexStore, records: RecordStore,
                 spool: SpoolReader, audit: AuditLog, exports: ExportStore, policy: RetentionPolicy) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.index = index
        self.records = records
        self.spool = spool  # read before the index, as index.records does: footage indexed in between is seen twice
        self.audit = audit
        self.exports = exports
        self.policy = policy  # the package is kept, locked, like footage
        self.key = SigningKey.load(settings.data_dir)

    # -- bookkeeping ------------------------------------------------------------
    def _save(self, pkg: ExportPackage) -> None:
        self.exports.save(pkg)

    def get(self, package_id: str) -> ExportPackage:
        return self.exports.get(package_id)

    def release(self, pkg: ExportPackage, actor: str) -> int:
        """Release the package's legal holds (docs/exports.md, procedure "release")."""
        return release_holds(self.store, self.exports, pkg.id, actor)

    def recover(self) -> list[str]:
        """Finish what interrupted or failed exports left: a running package whose
        heartbeat stopped is marked failed, and every failed package's unreleased holds
        are released.  Returns the ids of the packages released; one that storage
        refuses stays for the next run."""
        done = []
        for pkg in self.exports.needing_release(STALE_EXPORT_MS, self.settings.export_max_attempts):
            if pkg.status == "running":
                pkg.status = "failed"
                pkg.error = "导出中断（进程退出），已释放其法律保留 / export interrupted (its process ended); its legal holds were released"
                self._save(pkg)
            try:
                n = self.release(pkg, "system:export-recovery")
            except LabwitnessError as e:
                log.warning("legal holds of interrupted export %s not released yet: %s", pkg.id, e)
                continue
            self.audit.append("system", "hold.release", pkg.report_no, {"package_id": pkg.id, "holds": n,
                                                                        "why": "export failed or interrupted"}, "system")
            done.append(pkg.id)
        return done

    def preview_warnings(self, report_no: str) -> list[dict]:
        """The warnings as the index stands now (the job refines them from what it stitched)."""
        rf = self.records.report_footage(report_no, self.settings.report_margin_s * 1000, holds=False)
        return export_warnings(utc_ms(self.clock.now()),
                               [WindowFacts(w.camera_id, w.start_ms, w.end_ms, w.coverage, w.test_coverage if w.tests else None)
                                for w in rf.windows])

    # -- the queue ----------------------------------------------------------------
    def start(self, report_no: str, actor: str, role: str, package_id: str) -> ExportPackage:
        """Queue an export of ``report_no``; a worker on a jobs node builds it (docs/jobs.md)."""
        check_number(report_no, "报告编号", "report no.")
        warnings = self.preview_warnings(report_no)  # 404 now rather than in the background
        self.recover()
        pkg = ExportPackage(id=package_id, report_no=report_no, created_ms=utc_ms(self.clock.now()), actor=actor,
                            status="queued", role=role[:16], base_url=installation.public_base_url(self.settings)[:300],
                            warnings=json.dumps(warnings, ensure_ascii=False))
        self._save(pkg)
        self.audit.append(actor, "export.start", report_no, {"package_id": package_id, "warnings": [w["code"] for w in warnings]},
                          role)
        return pkg

    def wait(self, package_id: str, timeout: float | None = None) -> ExportPackage:
        """The package once done or failed, or as it stands after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pkg = self.get(package_id)
            if pkg.status not in PENDING or (deadline is not None and time.monotonic() >= deadline):
                return pkg
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))

    def claim(self, worker: str, package_id: str | None = None) -> Claim | None:
        """Take the next queued export (or ``package_id``), or one whose worker went silent (judged on
        the database's clock, index.exports: another node's heartbeat is never compared with ours)."""
        s = self.settings
        return self.exports.claim(worker, int(s.export_stale_s * 1000), s.export_max_attempts, package_id)

    def run(self, claim: Claim) -> None:
        """Build a claimed export, heartbeating; its end (done, failed, or taken over) in the audit log."""
        pkg = self.get(claim.package_id)
        role = pkg.role or "inspector"
        self.audit.append("system:export-worker", "export.claim", pkg.report_no,
                          {"package_id": pkg.id, "worker": claim.worker, "attempt": claim.attempt}, "system")
        with Heartbeat(self.exports, claim, self.settings.export_heartbeat_s) as beat:
            try:
                self.build(pkg, claim, beat)
                self.audit.append(pkg.actor, "export.done", pkg.report_no,
                                  {"package_id": pkg.id, "sha256": pkg.package_sha256, "worker": claim.worker,
                                   "attempt": claim.attempt}, role)
            except LostClaim:  # another worker builds it now; what this one held is that worker's
                log.warning("export %s: worker %s lost its claim (taken over); stopping", pkg.id, claim.worker)
            except Exception as e:  # the job reports its failure through its status
                self._failed(pkg, claim, role, e)

    def _failed(self, pkg: ExportPackage, claim: Claim, role: str, e: BaseException) -> None:
        pkg.status, pkg.error = "failed", public_error(e)
        log.exception("export %s of report %s failed", pkg.id, pkg.report_no)
        if not self.exports.beat(claim):  # taken over meanwhile: its holds are the other worker's now
            log.warning("export %s: failure not recorded, another worker holds it now", pkg.id)
            return
        # what it held is released before "failed" shows; if storage refuses, the rows stay for recover()
        try:
            released = self.release(pkg, "system:export-failed")
        except Exception:
            released = None
            log.exception("export %s: legal holds not released yet (recovery retries)", pkg.id)
        if not self.exports.finish(claim, pkg):
            log.warning("export %s: failure not recorded, another worker holds it now", pkg.id)
            return
        self.audit.append(pkg.actor, "export.failed", pkg.report_no,
                          {"package_id": pkg.id, "error": pkg.error, "holds_released": released}, role)

    # -- the job ----------------------------------------------------------------
    def _public_pem_of(self, key_id: str) -> bytes | None:
        """The PEM of a key the lab signed with (the current one, or one in its published list)."""
        if key_id == self.key.fingerprint:
            return self.key.public_pem()
        listed = next((k for k in published_keys(self.settings.data_dir, self.key) if k["key_id"] == key_id), None)
        return listed["public_key_pem"].encode() if listed else None

    def build(self, pkg: ExportPackage, claim: Claim, beat: Heartbeat | None = None) -> ExportPackage:
        """Build, hold, sign and store ``pkg`` under ``claim``; raises :class:`LostClaim` as soon
        as another worker took it over."""
        settings = self.settings

        def progress_to(value: float) -> None:  # every API node reads it from the row
            if (beat is not None and beat.lost) or not self.exports.beat(claim, round(value, 3)):
                raise LostClaim("导出已由其他节点接手 / another worker took this export over")

        rf = self.records.report_footage(pkg.report_no, settings.report_margin_s * 1000, holds=False, footage=False)
        records, windows = rf.records, [(w.camera_id, w.start_ms, w.end_ms) for w in rf.windows]
        tests = [w.tests for w in rf.windows]  # the test windows themselves, per window (low coverage is judged on them)
        if not windows:
            raise ExportError("报告关联的区域/设备没有摄像机 / no camera covers the report's areas or equipment")
        # the requesting node's address: the package says the same whichever node builds it
        base = (pkg.base_url or installation.public_base_url(settings)).rstrip("/")
        files, all_sources, facts = [], [], []
        with tempfile.TemporaryDirectory(prefix="lw-export-") as tmp:
            tmpd = Path(tmp)
            cams = windows
            per_cam: dict[str, int] = {}
            for n, (cam, lo, hi) in enumerate(cams):
                spooled = self.spool.state([cam]).get(cam, NOTHING_SPOOLED)
                f = self.index.footage(cam, lo, hi)
                test_cov = spans_coverage(((s.start_ms, s.end_ms) for s in f.segments), tests[n]) if tests[n] else None
                facts.append(WindowFacts(cam, lo, hi, f.coverage if f.segments else 0.0, test_cov))
                if not f.segments:
                    continue
                per_cam[cam] = per_cam.get(cam, 0) + 1
                several = sum(1 for w in cams if w[0] == cam) > 1
                name = f"{cam}-{per_cam[cam]}.mp4" if several else f"{cam}.mp4"

                def progress(frac: float, n=n) -> None:
                    pkg.progress = round((n + frac) / len(cams) * 0.9, 3)
                    progress_to(pkg.progress)

                with open(tmpd / name, "wb") as out:
                    res = stitch(self.store, f.segments, lo, hi, out, progress)
                files.append({
                    "name": name, "camera_id": cam, "sha256": res.sha256, "size": res.bytes, "frames": res.frames,
                    "window": {"start": iso_ms(from_ms(lo)), "end": iso_ms(from_ms(hi))},
                    "footage": {"start": iso_ms(from_ms(res.first_ms)) if res.first_ms else None,
                                "end": iso_ms(from_ms(res.last_ms)) if res.last_ms else None},
                    "coverage": round(f.coverage, 6),
                    **({"test_coverage": round(test_cov, 6)} if test_cov is not None else {}),
                    # every uncovered part of the window with its reason (index.tiling), as the API shows it
                    "gaps": [{"start": iso_ms(from_ms(p.start_ms)), "end": iso_ms(from_ms(p.end_ms)), "reason": p.reason,
                              **({"since": iso_ms(from_ms(p.since_ms))} if p.since_ms is not None else {})}
                             for p in f.uncovered(utc_ms(self.clock.now()), spooled)],
                    "sources": res.sources,
                })
                all_sources += res.sources
            if not files:
                raise ExportError("报告时段内没有录像 / there is no footage in the report's window")
            # 2. the originals must outlive the six months while this package is relied upon:
            #    Hold rows (pending) first, then the S3 holds, then confirmed (api.holds)
            now_ms = utc_ms(self.clock.now())
            place_holds(self.store, self.exports, pkg.id, all_sources)
            warnings = export_warnings(now_ms, facts)
            pkg.warnings = json.dumps(warnings, ensure_ascii=False)
            # each source's inclusion proof against its hourly seal (or "not yet sealed"), and those seals
            seal_members = attach_proofs(SealStore(self.index.engine), files, self._public_pem_of)
            # 3. manifest, signature, QR, zip
            manifest = {
                "schema": "labwitness.evidence/1", "package_id": pkg.id, "report_no": pkg.report_no,
                "created_at": iso_ms(from_ms(pkg.created_ms)), "exporter": pkg.actor,
                "lab_timezone": settings.timezone, "signing_key": self.key.fingerprint,
                "verify_url": f"{base}/verify/{pkg.id}",
                "test_records": [{"record_id": r.record_id, "revision": r.revision, **{
                    k: v for k, v in record_content(r).items() if k not in ("started_ms", "ended_ms")},
                    "started_at": iso_ms(from_ms(r.started_ms)), "ended_at": iso_ms(from_ms(r.ended_ms))} for r in records],
                "margin_s": settings.report_margin_s,
                "files": files,
                "seals": seal_summary(seal_members),
                "warnings": warnings,
            }
            manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode()
            signature = self.key.sign(manifest_bytes)
            zpath = tmpd / package_file_name(pkg.report_no, pkg.id)
            when = zip_time(pkg.created_ms)  # fixed member times: a rebuild gives the same bytes
            with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as z:
                for f in files:
                    add_member(z, f["name"], tmpd / f["name"], when)
                for member, body in seal_members.items():
                    add_member(z, member, body if isinstance(body, bytes) else body.encode(), when)
                add_member(z, MANIFEST, manifest_bytes, when)
                add_member(z, SIGNATURE, (signature + "\n").encode(), when)
                add_member(z, PUBKEY, self.key.public_pem(), when)
                add_member(z, QR, qr_png(manifest["verify_url"]), when)
            progress_to(0.95)
            # 4. the package itself is kept, locked, like footage
            sha = file_sha256(zpath)
            stored = self.store.put_file(f"exports/{pkg.id}.zip", zpath, self.policy(self.clock.now()), content_type="application/zip",
                                         metadata={"lw-report-no": quote(pkg.report_no, safe=""), "lw-sha256": sha})
        # 5. what /verify answers from, if this worker still holds the export (fenced by its claim)
        pkg.manifest, pkg.signature = manifest_bytes.decode(), signature
        pkg.package_key, pkg.package_version_id, pkg.package_sha256 = stored.key, stored.version_id, sha
        pkg.status, pkg.progress = "done", 1.0
        if not self.exports.finish(claim, pkg):
            raise LostClaim("导出已由其他节点接手或判定中断 / this export was taken over or given up as interrupted")
        return pkg
