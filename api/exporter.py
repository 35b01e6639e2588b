"""The export job: builds, holds, signs and stores one evidence package (see api.evidence)."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import zipfile
from pathlib import Path
from urllib.parse import quote

from sqlmodel import Session

from index.models import ExportPackage, Hold
from index.records import record_content
from index.tiling import NOTHING_SPOOLED
from labwitness.clock import from_ms, utc_ms
from labwitness.errors import NotFoundError
from storage.layout import iso_ms

from api import installation
from api.evidence import MANIFEST, PUBKEY, QR, SIGNATURE, ExportError, SigningKey, qr_png
from api.media import stitch

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, rt) -> None:
        self.rt = rt
        self.key = SigningKey.load(rt.settings.data_dir)
        self._threads: dict[str, threading.Thread] = {}

    # -- bookkeeping ------------------------------------------------------------
    def _save(self, pkg: ExportPackage) -> None:
        with Session(self.rt.index.engine, expire_on_commit=False) as s:
            s.merge(pkg)
            s.commit()

    def get(self, package_id: str) -> ExportPackage:
        with Session(self.rt.index.engine, expire_on_commit=False) as s:
            pkg = s.get(ExportPackage, package_id)
        if pkg is None:
            raise NotFoundError(f"证据包不存在 / evidence package {package_id!r} not found")
        return pkg

    # -- the job ----------------------------------------------------------------
    def start(self, report_no: str, actor: str, role: str, package_id: str) -> ExportPackage:
        from api.records_routes import report_windows

        report_windows(self.rt, report_no)  # 404 now rather than in the background
        pkg = ExportPackage(id=package_id, report_no=report_no, created_ms=utc_ms(self.rt.clock.now()), actor=actor)
        self._save(pkg)
        self.rt.audit.append(actor, "export.start", report_no, {"package_id": package_id}, role)
        t = threading.Thread(target=self._run_safely, args=(pkg, role), name=f"export-{package_id[:8]}", daemon=True)
        self._threads[package_id] = t
        t.start()
        return pkg

    def wait(self, package_id: str, timeout: float | None = None) -> ExportPackage:
        t = self._threads.get(package_id)
        if t is not None:
            t.join(timeout)
        return self.get(package_id)

    def _run_safely(self, pkg: ExportPackage, role: str) -> None:
        try:
            self.build(pkg)
            self.rt.audit.append(pkg.actor, "export.done", pkg.report_no,
                                 {"package_id": pkg.id, "sha256": pkg.package_sha256}, role)
        except Exception as e:  # the job reports its failure through its status
            log.exception("export %s of report %s failed", pkg.id, pkg.report_no)
            pkg.status, pkg.error = "failed", f"{type(e).__name__}: {e}"[:2000]
            self._save(pkg)
            self.rt.audit.append(pkg.actor, "export.failed", pkg.report_no, {"package_id": pkg.id, "error": pkg.error}, role)

    def build(self, pkg: ExportPackage, public_base_url: str | None = None) -> ExportPackage:
        from api.records_routes import report_windows

        rt = self.rt
        records, windows = report_windows(rt, pkg.report_no)
        if not windows:
            raise ExportError("报告关联的区域/设备没有摄像机 / no camera covers the report's areas or equipment")
        base = (public_base_url or installation.public_base_url(rt.settings)).rstrip("/")
        files, all_sources = [], []
        with tempfile.TemporaryDirectory(prefix="lw-export-") as tmp:
            tmpd = Path(tmp)
            cams = windows
            per_cam: dict[str, int] = {}
            for n, (cam, lo, hi) in enumerate(cams):
                spooled = rt.spool_view.state([cam]).get(cam, NOTHING_SPOOLED)  # before the index: index.records
                f = rt.index.footage(cam, lo, hi)
                if not f.segments:
                    continue
                per_cam[cam] = per_cam.get(cam, 0) + 1
                several = sum(1 for w in cams if w[0] == cam) > 1
                name = f"{cam}-{per_cam[cam]}.mp4" if several else f"{cam}.mp4"

                def progress(frac: float, n=n) -> None:
                    pkg.progress = round((n + frac) / len(cams) * 0.9, 3)
                    self._save(pkg)

                with open(tmpd / name, "wb") as out:
                    res = stitch(rt.store, f.segments, lo, hi, out, progress)
                files.append({
                    "name": name, "camera_id": cam, "sha256": res.sha256, "size": res.bytes, "frames": res.frames,
                    "window": {"start": iso_ms(from_ms(lo)), "end": iso_ms(from_ms(hi))},
                    "footage": {"start": iso_ms(from_ms(res.first_ms)) if res.first_ms else None,
                                "end": iso_ms(from_ms(res.last_ms)) if res.last_ms else None},
                    "coverage": round(f.coverage, 6),
                    # every uncovered part of the window with its reason (index.tiling), as the API shows it
                    "gaps": [{"start": iso_ms(from_ms(p.start_ms)), "end": iso_ms(from_ms(p.end_ms)), "reason": p.reason,
                              **({"since": iso_ms(from_ms(p.since_ms))} if p.since_ms is not None else {})}
                             for p in f.uncovered(utc_ms(rt.clock.now()), spooled)],
                    "sources": res.sources,
                })
                all_sources += res.sources
            if not files:
                raise ExportError("报告时段内没有录像 / there is no footage in the report's window")
            # 2. the originals must outlive the six months while this package is relied upon
            now_ms = utc_ms(rt.clock.now())
            for src in all_sources:
                rt.store.set_legal_hold(src["key"], src["version_id"], True)
            with Session(rt.index.engine) as s:
                for src in all_sources:
                    s.add(Hold(segment_id=src["segment_id"], package_id=pkg.id, placed_ms=now_ms))
                s.commit()
            # 3. manifest, signature, QR, zip
            manifest = {
                "schema": "labwitness.evidence/1", "package_id": pkg.id, "report_no": pkg.report_no,
                "created_at": iso_ms(from_ms(now_ms)), "exporter": pkg.actor,
                "lab_timezone": rt.settings.timezone, "signing_key": self.key.fingerprint,
                "verify_url": f"{base}/verify/{pkg.id}",
                "test_records": [{"record_id": r.record_id, "revision": r.revision, **{
                    k: v for k, v in record_content(r).items() if k not in ("started_ms", "ended_ms")},
                    "started_at": iso_ms(from_ms(r.started_ms)), "ended_at": iso_ms(from_ms(r.ended_ms))} for r in records],
                "margin_s": rt.settings.report_margin_s,
                "files": files,
            }
            manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode()
            signature = self.key.sign(manifest_bytes)
            zpath = tmpd / f"evidence-{pkg.report_no}-{pkg.id[:8]}.zip"
            with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as z:
                for f in files:
                    z.write(tmpd / f["name"], f["name"])
                z.writestr(MANIFEST, manifest_bytes)
                z.writestr(SIGNATURE, signature + "\n")
                z.writestr(PUBKEY, self.key.public_pem())
                z.writestr(QR, qr_png(manifest["verify_url"]))
            # 4. the package itself is kept, locked, like footage
            from storage.s3 import file_sha256

            sha = file_sha256(zpath)
            stored = rt.store.put_file(f"exports/{pkg.id}.zip", zpath, rt.policy(rt.clock.now()), content_type="application/zip",
                                       metadata={"lw-report-no": quote(pkg.report_no, safe=""), "lw-sha256": sha})
        # 5. what /verify answers from
        pkg.manifest, pkg.signature = manifest_bytes.decode(), signature
        pkg.package_key, pkg.package_version_id, pkg.package_sha256 = stored.key, stored.version_id, sha
        pkg.status, pkg.progress = "done", 1.0
        self._save(pkg)
        return pkg
