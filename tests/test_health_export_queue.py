"""Health shows the export queue (index.exports): how many exports wait or are being built and
how long ago the oldest of them was requested, with a warning past
``Settings.export_queue_warning_s`` — the pure rule as a table, the facts from a real index on
both databases, the threshold from the settings and the page's row."""

from __future__ import annotations

import pytest

from index.exports import ExportStore, QueueBacklog
from index.models import ExportPackage
from retention.health import ExportQueueFacts, Facts, StorageFacts, Thresholds, classify, export_queue_lag, gather
from index.coverage import CoverageStore

NOW = 1_790_035_200_000
MIN = 60_000


@pytest.mark.parametrize("queue, warning_s, warned", [
    (ExportQueueFacts(), 1800, False),  # nothing waits
    (ExportQueueFacts(1, 0, 0.0), 1800, False),  # just requested
    (ExportQueueFacts(2, 1, 1800.0), 1800, False),  # exactly at the threshold
    (ExportQueueFacts(2, 1, 1800.1), 1800, True),
    (ExportQueueFacts(0, 1, 7200.0), 1800, True),  # one export being built for two hours
    (ExportQueueFacts(0, 1, 7200.0), 3 * 3600, False),  # a site that allows longer builds
])
def test_export_queue_lag_table(queue, warning_s, warned):
    text = export_queue_lag(queue, warning_s)
    assert bool(text) is warned
    if warned:
        assert "export queue" in text and "证据包导出积压" in text and f"{queue.queued} queued" in text
        facts = Facts(NOW, 60, 190, [], StorageFacts(True, capacity_bytes=1, free_bytes=1), exports=queue)
        status, problems = classify(facts, Thresholds(export_queue_warning_s=warning_s))
        assert [p["level"] for p in problems if p["code"] == "export_queue_lag"] == ["warning"]


def test_backlog_and_health_facts(index):
    store = ExportStore(index.engine, lambda: NOW)
    assert store.backlog() == QueueBacklog()
    for pid, status, created in (("old-done", "done", NOW - 300 * MIN), ("failed", "failed", NOW - 200 * MIN),
                                 ("building", "running", NOW - 45 * MIN), ("waiting", "queued", NOW - 5 * MIN),
                                 ("next", "queued", NOW - MIN)):
        store.save(ExportPackage(id=pid, report_no="JC-1", created_ms=created, actor="t", status=status))
    assert store.backlog() == QueueBacklog(queued=2, running=1, oldest_created_ms=NOW - 45 * MIN)
    facts = gather(index.engine, CoverageStore(index.engine, lambda: NOW), NOW, segment_seconds=60, read_timeout_s=10,
                   retention_days=190, retention_enforced=True)
    assert facts.exports == ExportQueueFacts(2, 1, 45 * 60.0)
    _, problems = classify(facts, Thresholds(export_queue_warning_s=1800))
    assert any(p["code"] == "export_queue_lag" and "45 min" in p["text"] for p in problems)
    _, problems = classify(facts, Thresholds(export_queue_warning_s=3600))
    assert not any(p["code"] == "export_queue_lag" for p in problems)


def test_threshold_from_settings(tmp_path):
    from api.settings import load_settings

    assert load_settings(data_dir=tmp_path).export_queue_warning_s == 1800.0
    assert load_settings(data_dir=tmp_path, export_queue_warning_s=600).export_queue_warning_s == 600.0
