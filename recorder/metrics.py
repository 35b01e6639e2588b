"""Prometheus metrics of the recording path, created per registry (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RecorderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.segments = Counter("labwitness_segments_written_total", "Segments committed to the spool", ["camera"], registry=r)
        self.uploaded = Counter("labwitness_segments_uploaded_total", "Segments stored with verified lock", ["camera"], registry=r)
        self.indexed = Counter("labwitness_segments_indexed_total", "Segments whose index row is committed", ["camera"], registry=r)
        self.gaps = Counter("labwitness_gaps_total", "Recording interruptions", ["camera", "reason"], registry=r)
        self.dropped_packets = Counter("labwitness_dropped_packets_total", "Packets not recorded", ["camera", "reason"], registry=r)
        self.upload_errors = Counter("labwitness_upload_errors_total", "Failed upload attempts (retried)", ["kind"], registry=r)
        # camera leases of a cluster's recorder node (recorder.leases, docs/cluster.md)
        self.leases_held = Gauge("labwitness_camera_leases_held", "Camera leases this node holds", registry=r)
        self.lease_takeovers = Counter("labwitness_camera_lease_takeovers_total",
                                       "Cameras taken over from another node (failover: its lease expired; handover: released)",
                                       ["reason"], registry=r)
        self.spool_bytes = Gauge("labwitness_spool_bytes", "Bytes held in the local spool", registry=r)
        self.spool_backlog = Gauge("labwitness_spool_backlog_segments", "Finished segments not yet stored and indexed", registry=r)
        self.spool_full = Gauge("labwitness_spool_full", "1 while a camera drops footage for lack of spool room", ["camera"], registry=r)
        self.camera_up = Gauge("labwitness_camera_recording", "1 while a camera's session is producing segments", ["camera"], registry=r)
        self.close_to_locked = Histogram(
            "labwitness_segment_close_to_locked_seconds", "From segment close to verified lock in storage",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600), registry=r,
        )
