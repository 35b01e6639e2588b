"""What labwitness exports to Prometheus, and where the monitoring samples it ships live
(``deploy/prometheus``, ``deploy/grafana``): for the tests of those samples and of /metrics."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "labwitness-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "labwitness-dashboard.json"

#: every metric labwitness exports (retention health + recorder)
METRICS = {
    "labwitness_health_status", "labwitness_camera_last_segment_age_seconds", "labwitness_camera_offline",
    "labwitness_camera_coverage_ratio", "labwitness_camera_unusable_ratio", "labwitness_camera_clock_offset_seconds",
    "labwitness_camera_oldest_footage_age_days", "labwitness_storage_used_bytes", "labwitness_storage_growth_bytes_per_day",
    "labwitness_storage_runway_days", "labwitness_storage_capacity_bytes", "labwitness_retention_enforced",
    "labwitness_integrity_findings_open", "labwitness_lock_verified_ratio", "labwitness_job_last_success_timestamp_seconds",
    "labwitness_job_last_status", "labwitness_segments_written_total", "labwitness_segments_uploaded_total",
    "labwitness_gaps_total", "labwitness_dropped_packets_total", "labwitness_upload_errors_total", "labwitness_spool_bytes",
    "labwitness_spool_backlog_segments", "labwitness_spool_full", "labwitness_camera_recording",
    "labwitness_upload_lag_seconds", "labwitness_witness_backlog", "labwitness_witness_oldest_undelivered_age_seconds",
    "labwitness_witness_refused", "labwitness_witness_last_delivery_timestamp_seconds", "labwitness_seal_age_seconds",
}
HISTOGRAMS = {"labwitness_segment_close_to_locked_seconds"}
#: the series a histogram is exposed as
ALLOWED = METRICS | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
