"""Health by output: is every enabled camera producing locked segments right now,
and does the retention hold?

One report for ``GET /api/v1/health``, ``GET /api/v1/health/retention``,
``labwitness health`` (exit 0 ok, 1 warning, 2 critical) and the Prometheus
gauges.  Facts come from the index (what really reached storage, see
:mod:`retention.health`), the spool (what is waiting) and, inside the service,
the live workers — never from "the process is alive".
"""

from __future__ import annotations

import shutil
import time

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from index.coverage import CoverageStore
from index.queries import IndexStore
from labwitness.clock import Clock, from_ms, utc_ms
from labwitness.errors import IndexUnavailableError, LabwitnessError
from recorder.service import RecorderService
from retention import cluster_health, health as rh
from retention.camera_clock import camera_clock, osd_off
from retention.journal import outbox_backlog
from retention.policy import RetentionPolicy
from retention.witness import WitnessOutbox, WitnessThresholds
from retention.witness import classify as classify_witnesses, facts as witness_facts
from storage.base import ObjectStore
from storage.doc_spool import DocumentSpool
from storage.protection import storage_protection

from api.settings import Settings

SEVERITY = list(rh.SEVERITY)
UPLOAD_LAG_WARNING_S = 15 * 60  # footage older than this still only in the spool: storage is not keeping up
JOURNAL_LAG_WARNING_S = 15 * 60  # evidence changes older than this still only in the database (or the local spool)


class Health:
    """The health report of one running labwitness, from what it holds."""

    def __init__(self, settings: Settings, clock: Clock, store: ObjectStore, index: IndexStore, policy: RetentionPolicy,
                 recorder: RecorderService | None, *, embedded_storage: bool,
                 witnesses: WitnessOutbox | None = None,
                 documents: DocumentSpool | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.index = index
        self.policy = policy
        self.recorder = recorder  # None: no recorder in this process (the spool is read from disk)
        self.embedded_storage = embedded_storage  # the store's disk is ours: its free space is the runway
        self.witnesses = witnesses  # the outbox to the witnesses outside the box (retention.witness)
        self.witness_thresholds = WitnessThresholds(settings.witness_warning_s, settings.witness_critical_s)
        self.thresholds = rh.Thresholds(export_queue_warning_s=settings.export_queue_warning_s)
        self.documents = documents  # journal batches waiting for the bucket

    def _cluster(self, now_ms: int, flag) -> dict | None:
        """The nodes and camera leases (docs/cluster.md); None when no node ever registered."""
        try:
            cluster = cluster_health.gather(self.index.engine, now_ms, round(self.settings.lease_seconds * 1000))
        except SQLAlchemyError:
            return None
        for level, code, text, camera in cluster_health.classify(cluster):
            flag(level, code, text, camera)
        return cluster if cluster["nodes"] else None

    def _journal(self, now_ms: int, flag) -> dict:
        """The journal's two waiting rooms: the index's outbox, then the local document spool."""
        out: dict = {"outbox_entries": None, "outbox_oldest_age_s": None, "documents_waiting": None,
                     "documents_oldest_age_s": None}
        try:
            b = outbox_backlog(self.index.engine, now_ms)
            out["outbox_entries"], out["outbox_oldest_age_s"] = b.entries, b.oldest_age_s
        except IndexUnavailableError:
            pass  # said once already, as index_unavailable
        if self.documents is not None:
            out["documents_waiting"], out["documents_oldest_age_s"] = self.documents.backlog()
        for what, age in (("outbox", out["outbox_oldest_age_s"]), ("documents", out["documents_oldest_age_s"])):
            if age is not None and age > JOURNAL_LAG_WARNING_S:
                flag("warning", "journal_lag", f"证据日志滞后 {age / 60:.0f} 分钟 / evidence journal: changes wait "
                                               f"{age / 60:.0f} min in the {what} before reaching the locked bucket")
        return out

    def _capacity(self, used: int) -> tuple[int, int] | None:
        """(total, free) bytes for the runway: the configured capacity, else the
        embedded SeaweedFS's disk, else unknown."""
        cap = self.settings.storage_capacity_bytes
        if cap:
            return cap, max(0, cap - used)
        if self.embedded_storage:
            du = shutil.disk_usage(self.settings.data_dir)
            return used + du.free, du.free
        return None

    def report(self, *, refresh_coverage: bool = True) -> dict:
        now = self.clock.now()
        now_ms = utc_ms(now)
        extra: list[dict] = []

        def flag(level: str, code: str, text: str, camera: str | None = None) -> None:
            extra.append({"level": level, "code": code, "camera": camera, "text": text})

        info = self.store.info
        try:
            self.store.check(create=False)
        except LabwitnessError as e:
            flag("critical", "storage_unavailable", f"对象存储异常 / object store: {e}")

        workers = self.recorder.workers() if self.recorder else {}
        backlog = self.recorder.uploader.backlog() if self.recorder else _spool_backlog(self.settings.spool_path)
        upload_error = self.recorder.uploader.last_error if self.recorder else ""
        oldest_waiting = self.recorder.uploader.oldest_waiting_end() if self.recorder else None
        upload_lag_s = round(max(0.0, (now - oldest_waiting).total_seconds()), 1) if oldest_waiting else 0.0
        if upload_lag_s > UPLOAD_LAG_WARNING_S:
            flag("warning", "upload_lag", f"上传滞后 {upload_lag_s / 60:.0f} 分钟 / footage waits {upload_lag_s / 60:.0f} min in the "
                                          f"local spool before reaching storage")
        cameras: dict[str, dict] = {}
        facts = None
        try:
            cov = CoverageStore(self.index.engine, lambda: now_ms)
            if refresh_coverage:
                cov.refresh()
            retention_days = (self.policy(now) - now).total_seconds() / 86400
            facts = rh.gather(self.index.engine, cov, now_ms, segment_seconds=self.settings.segment_seconds,
                              read_timeout_s=self.settings.rtsp_read_timeout_s, retention_days=retention_days,
                              retention_enforced=info.retention_enforced, spool_backlog=backlog, upload_error=upload_error,
                              seal_interval_h=self.settings.seal_interval_h, seal_grace_min=self.settings.seal_grace_min)
            cap = self._capacity(facts.storage.used_bytes)
            if cap is not None:
                facts.storage.set_capacity(*cap)
            for c in facts.cameras:  # the camera's clock as its stream tells it (live workers only)
                w = workers.get(c.camera_id)
                c.stream_clock_offset_s = w.status.stream_clock_offset_s if w else None
            status, problems = rh.classify(facts, self.thresholds)
            for c in facts.cameras:
                w = workers.get(c.camera_id)
                osd_offset, osd_source = camera_clock(c.stream_clock_offset_s, c.clock_offset_s)
                d = {
                    "area_id": c.area_id, "name": c.name,
                    "last_segment_end": from_ms(c.last_segment_end_ms).isoformat() if c.last_segment_end_ms else None,
                    "last_segment_age_s": c.last_segment_age_s, "offline": c.offline,
                    "coverage": c.coverage, "unusable": c.unusable, "usable_coverage": c.usable_coverage,
                    "unusable_ongoing": c.unusable_ongoing,
                    "coverage_24h": c.coverage.get("24h"), "gaps_24h": len(c.gaps_24h),
                    "gaps": [{"start": from_ms(g["start_ms"]).isoformat(), "end": from_ms(g["end_ms"]).isoformat(),
                              "reason": g["reason"]} for g in c.gaps_24h],
                    "gap_reasons_7d": c.gap_reasons_7d,
                    "oldest_footage": from_ms(c.oldest_ms).isoformat() if c.oldest_ms else None,
                    "oldest_footage_age_days": c.oldest_age_days, "bytes_183d": c.bytes_183d,
                    "clock_offset_s": c.clock_offset_s,
                    "stream_clock_offset_s": c.stream_clock_offset_s,
                    "stream_clock_at": w.status.stream_clock_at.isoformat() if w and w.status.stream_clock_at else None,
                    # what the burned-in OSD time differs from the index time by, and whether that is past the bound
                    "osd_offset_s": osd_offset, "osd_offset_source": osd_source if osd_offset is not None else None,
                    "osd_offset_warning": osd_off(osd_offset),
                    "state": w.shown_state() if w else None,
                    "last_error": w.status.last_error if w else "",
                    "notice": w.status.notice if w else "",
                    # the camera's audio: its codec, what the segments carry ("" not recorded) and why not
                    "audio_codec": w.status.audio_codec if w and w.status.sessions else None,
                    "audio_recorded": w.status.audio_recorded if w and w.status.sessions else None,
                    "audio_note": w.status.audio_note if w else "",
                }
                if w is not None and w.status.state == "spool_full":
                    flag("critical", "spool_full", f"{c.camera_id}: 本地缓存已满 / spool full: footage is not being recorded",
                         c.camera_id)
                cameras[c.camera_id] = d
        except IndexUnavailableError as e:
            status, problems = "critical", []
            flag("critical", "index_unavailable", f"索引数据库不可用 / index database unavailable: {e}")
        journal = self._journal(now_ms, flag)
        witnesses = self._witnesses(now_ms, extra)
        cluster = self._cluster(now_ms, flag)
        alerts = problems + extra
        status = max([status] + [a["level"] for a in extra if a["level"] in SEVERITY], key=SEVERITY.index)
        areas: dict[str, dict] = {}
        for cid, d in cameras.items():
            a = areas.setdefault(d["area_id"] or "", {"cameras": 0, "offline": 0, "min_coverage_24h": 1.0,
                                                      "min_coverage_183d": 1.0})
            a["cameras"] += 1
            a["offline"] += int(d["offline"])
            a["min_coverage_24h"] = min(a["min_coverage_24h"], d["coverage"].get("24h", 0.0))
            a["min_coverage_183d"] = min(a["min_coverage_183d"], d["coverage"].get("183d", 0.0))
        st = facts.storage if facts else None
        return {
            "status": status, "problems": [a["text"] for a in alerts if a["level"] in ("warning", "critical")],
            "alerts": alerts, "checked_at": now.isoformat(),
            "storage": {"backend": info.backend, "location": info.location, "retention_enforced": info.retention_enforced,
                        "detail": info.detail,
                        "used_bytes": st.used_bytes if st else None,
                        "growth_bytes_per_day": st.growth_bytes_per_day if st else None,
                        "capacity_bytes": st.capacity_bytes if st else None, "free_bytes": st.free_bytes if st else None,
                        "runway_days": st.runway_days if st else None, "needed_days": st.needed_days if st else None},
            # what this profile protects the footage against, and what it does not (README)
            "storage_protection": storage_protection("embedded" if self.embedded_storage else "external"),
            "retention": {"months": self.policy.months, "margin_days": self.policy.margin_days},
            "integrity": {"open_findings": facts.findings_open if facts else {},
                          "critical_findings": facts.findings_critical if facts else 0},
            "jobs": facts.jobs if facts else {},
            "seals": _seal_report(facts, now_ms),
            # the export queue (index.exports): unfinished packages and how long ago the oldest was requested
            "exports": {"queued": facts.exports.queued, "running": facts.exports.running,
                        "oldest_age_s": facts.exports.oldest_age_s,
                        "warning_s": self.thresholds.export_queue_warning_s} if facts else None,
            "time_witnesses": rh.time_witness_view(facts.jobs) if facts else None,
            "spool": {"backlog_segments": backlog, "bytes": self.recorder.quota.used if self.recorder else None,
                      "upload_lag_s": upload_lag_s, "last_upload_error": upload_error},
            "witnesses": witnesses,
            "journal": journal,
            "cluster": cluster,
            "areas": areas,
            "cameras": cameras,
        }

    def _witnesses(self, now_ms: int, extra: list[dict]) -> dict[str, dict]:
        """Backlog, age of the oldest undelivered document and last error per witness; their problems into ``extra``."""
        if self.witnesses is None or not self.witnesses.names:
            return {}
        try:
            facts = witness_facts(self.witnesses, now_ms)
        except IndexUnavailableError:
            return {}  # index_unavailable is already reported
        extra.extend(classify_witnesses(facts, self.witness_thresholds))
        return {f.name: f.to_dict() for f in facts}


def _seal_report(facts, now_ms: int) -> dict:
    sf = facts.seals if facts else None
    if sf is None:
        return {}
    return {"interval_h": sf.interval_h, "newest_seq": sf.newest_seq,
            "newest_at": from_ms(sf.newest_ms).isoformat() if sf.newest_ms else None,
            "age_s": round((now_ms - sf.newest_ms) / 1000, 1) if sf.newest_ms else None}


def _spool_backlog(spool_dir) -> int:
    """Committed segments waiting in a spool that no process in here is draining."""
    if not spool_dir.exists():
        return 0
    return sum(1 for p in spool_dir.glob("*/" + "[0-9]" * 12 + ".json"))


class HealthCollector:
    """Prometheus gauges from the health report, computed at scrape time at most
    every ``ttl_s`` (a scrape every 15 s must not re-read six months of index)."""

    def __init__(self, health: Health, ttl_s: float = 30.0) -> None:
        self.health = health
        self.ttl_s = ttl_s
        self._cached: tuple[float, dict] | None = None

    def report(self) -> dict | None:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self.ttl_s:
            try:
                self._cached = (now, self.health.report())
            except Exception:  # a scrape must still return the recorder's own metrics
                return self._cached[1] if self._cached else None
        return self._cached[1]

    def describe(self):
        return []  # metrics are created at collect time (no registration-time health run)

    def collect(self):
        rep = self.report()
        if rep is None:
            return
        g = GaugeMetricFamily
        status = g("labwitness_health_status", "Overall health: 0 ok, 1 warning, 2 critical")
        status.add_metric([], SEVERITY.index(rep["status"]))
        age = g("labwitness_camera_last_segment_age_seconds", "Seconds since the camera's newest stored segment ended",
                labels=["camera", "area"])
        off = g("labwitness_camera_offline", "1 when no segment ended within 2 segment lengths", labels=["camera", "area"])
        cov = g("labwitness_camera_coverage_ratio", "Share of the window covered by stored footage",
                labels=["camera", "area", "window"])
        bad = g("labwitness_camera_unusable_ratio", "Share of the window recorded but not usable (blackout, frozen, "
                                                    "obscured, moved)", labels=["camera", "area", "window"])
        clock = g("labwitness_camera_clock_offset_seconds", "Camera clock minus the footage's index time: RTCP sender "
                  "reports when the stream has them, else ONVIF (what the burned-in OSD time is off by)", labels=["camera"])
        oldest = g("labwitness_camera_oldest_footage_age_days", "Age of the oldest retained footage",
                   labels=["camera", "area"])
        for cam, d in rep["cameras"].items():
            area = d["area_id"] or ""
            if d["last_segment_age_s"] is not None:
                age.add_metric([cam, area], d["last_segment_age_s"])
            off.add_metric([cam, area], 1.0 if d["offline"] else 0.0)
            for w, v in d["coverage"].items():
                cov.add_metric([cam, area, w], v)
            for w, v in d["unusable"].items():
                bad.add_metric([cam, area, w], v)
            if d["osd_offset_s"] is not None:
                clock.add_metric([cam], d["osd_offset_s"])
            if d["oldest_footage_age_days"] is not None:
                oldest.add_metric([cam, area], d["oldest_footage_age_days"])
        st = rep["storage"]
        storage = []
        for name, key, text in (("labwitness_storage_used_bytes", "used_bytes", "Bytes of stored footage"),
                                ("labwitness_storage_growth_bytes_per_day", "growth_bytes_per_day", "Footage bytes per day: each enabled camera's bytes per recorded second (last 24 h of its footage) x 86400"),
                                ("labwitness_storage_runway_days", "runway_days", "Days until storage is full at the current rate"),
                                ("labwitness_storage_capacity_bytes", "capacity_bytes", "Storage capacity used for the runway")):
            m = g(name, text)
            if st.get(key) is not None:
                m.add_metric([], st[key])
            storage.append(m)
        lag = g("labwitness_upload_lag_seconds", "Age of the oldest segment waiting in the spool for storage")
        lag.add_metric([], rep["spool"]["upload_lag_s"])
        storage.append(lag)
        enforced = g("labwitness_retention_enforced", "1 when storage enforces retention (Object Lock COMPLIANCE)")
        enforced.add_metric([], 1.0 if st["retention_enforced"] else 0.0)
        findings = g("labwitness_integrity_findings_open", "Open integrity findings", labels=["kind"])
        for kind, n in rep["integrity"]["open_findings"].items():
            findings.add_metric([kind], n)
        # `task`, not `job`: Prometheus reserves `job` for the scrape job (it would become `exported_job`)
        job_ok = g("labwitness_job_last_success_timestamp_seconds", "When each retention job last succeeded", labels=["task"])
        job_status = g("labwitness_job_last_status", "Last run of each job: 0 ok, 1 warning, 2 critical, 3 failed/refused",
                       labels=["task"])
        codes = {"ok": 0, "warning": 1, "critical": 2}
        for job, run in rep["jobs"].items():
            if run.get("last_success_ms"):
                job_ok.add_metric([job], run["last_success_ms"] / 1000)
            job_status.add_metric([job], codes.get(run["status"], 3))
        seal_age = g("labwitness_seal_age_seconds", "Seconds since the newest seal (signed Merkle root) was written")
        if rep.get("seals", {}).get("age_s") is not None:
            seal_age.add_metric([], rep["seals"]["age_s"])
        witness = g("labwitness_time_witness_offset_seconds", "The latest sweep's time witnesses: witness clock minus "
                    "host clock (absent witnesses are left out)", labels=["source", "independent"])
        for w in (rep.get("time_witnesses") or {}).get("witnesses", []):
            if "offset_s" in w:
                witness.add_metric([w["source"], "1" if w["independent"] else "0"], w["offset_s"])
        lock = g("labwitness_lock_verified_ratio", "Share of sampled objects whose retention read back as expected")
        verify = rep["jobs"].get("verify")
        if verify and isinstance(verify.get("summary"), dict):
            sm = verify["summary"]
            checked = sm.get("checked") or 0
            if checked:  # run_verify's summary: {"checked": n, "ok": m, ...}
                lock.add_metric([], (sm.get("ok") or 0) / checked)
        queue = g("labwitness_export_queue_oldest_age_seconds", "Age of the oldest unfinished export (queued or being "
                  "built) since it was requested (0: none)")
        queue.add_metric([], (rep.get("exports") or {}).get("oldest_age_s") or 0.0)
        journal = [queue]
        for name, key, text in (
                ("labwitness_journal_outbox_entries", "outbox_entries", "Evidence changes waiting in the index's outbox"),
                ("labwitness_journal_outbox_oldest_age_seconds", "outbox_oldest_age_s",
                 "Age of the oldest change waiting in the outbox"),
                ("labwitness_documents_waiting", "documents_waiting", "Journal batches waiting in the local spool"),
                ("labwitness_documents_oldest_age_seconds", "documents_oldest_age_s",
                 "Age of the oldest document waiting in the local spool")):
            gauge = g(name, text)
            value = rep.get("journal", {}).get(key)
            gauge.add_metric([], value if value is not None else 0.0)
            journal.append(gauge)
        yield from [status, age, off, cov, bad, clock, oldest, *storage, enforced, findings, job_ok, job_status, seal_age,
                    lock, witness, *witness_metrics(rep.get("witnesses") or {}), *journal,
                    *cluster_metrics(rep.get("cluster"))]


def cluster_metrics(cluster: dict | None) -> list[GaugeMetricFamily]:
    """The cluster's nodes and camera leases (docs/cluster.md); nothing on a box that never registered a node."""
    if not cluster:
        return []
    g = GaugeMetricFamily
    nodes = g("labwitness_cluster_node_up", "1 alive, 0 stale (no heartbeat for a lease), absent once stopped",
              labels=["node", "roles"])
    held = g("labwitness_cluster_node_cameras_held", "Camera leases each node holds", labels=["node"])
    for n in cluster["nodes"]:
        if n["state"] != "stopped":
            nodes.add_metric([n["node_id"], ",".join(n["roles"])], 1.0 if n["state"] == "alive" else 0.0)
            held.add_metric([n["node_id"]], n["cameras_held"])
    failovers = g("labwitness_camera_failovers", "Times the camera's lease expired and another node took it over",
                  labels=["camera"])
    last = g("labwitness_camera_last_failover_timestamp_seconds", "When the camera last failed over", labels=["camera"])
    for cid, lv in cluster["leases"]["cameras"].items():
        failovers.add_metric([cid], lv["failovers"])
        if lv["last_failover_ms"] is not None:
            last.add_metric([cid], lv["last_failover_ms"] / 1000)
    return [nodes, held, failovers, last]


def witness_metrics(witnesses: dict[str, dict]) -> list[GaugeMetricFamily]:
    """Per witness: documents owed, age of the oldest, refusals, last confirmed delivery."""
    g = GaugeMetricFamily
    backlog = g("labwitness_witness_backlog", "Documents (seals) not yet confirmed by the witness", labels=["witness"])
    age = g("labwitness_witness_oldest_undelivered_age_seconds", "Age of the oldest document the witness has not "
                                                                  "confirmed (0: nothing owed)", labels=["witness"])
    refused = g("labwitness_witness_refused", "Documents the witness refused (an admin must act)", labels=["witness"])
    last = g("labwitness_witness_last_delivery_timestamp_seconds", "When the witness last confirmed a document",
             labels=["witness"])
    for name, w in witnesses.items():
        backlog.add_metric([name], w["pending"])
        age.add_metric([name], w["oldest_age_s"] or 0.0)
        refused.add_metric([name], w["refused"])
        if w["last_delivered_ms"]:
            last.add_metric([name], w["last_delivered_ms"] / 1000)
    return [backlog, age, refused, last]
