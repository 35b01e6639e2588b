"""The Prometheus alert rules and Grafana dashboard under deploy/ parse, have the
expected structure, and reference only metrics labwitness exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from deploytools import ALLOWED, DASHBOARD, METRICS, RULES

yaml = pytest.importorskip("yaml")

METRIC_RE = re.compile(r"\blabwitness_[a-z0-9_]+")
DURATION_RE = re.compile(r"^(0|[0-9]+(ms|s|m|h|d|w|y))+$")
CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and set(doc) == {"groups"}
    out = []
    names = set()
    for g in doc["groups"]:
        assert set(g) >= {"name", "rules"} and g["name"] not in names and g["rules"], g.get("name")
        names.add(g["name"])
        out += g["rules"]
    return out


def dashboard_exprs(dash: dict) -> list[str]:
    exprs = []
    for p in dash["panels"]:
        exprs += [t["expr"] for t in p.get("targets", [])]
        for sub in p.get("panels", []):
            exprs += [t["expr"] for t in sub.get("targets", [])]
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            exprs.append(q)
    return exprs


def balanced(expr: str) -> bool:
    """Brackets pair up outside string literals (a cheap syntax check without promtool)."""
    stack, pairs, quote = [], {")": "(", "]": "[", "}": "{"}, None
    for ch in expr:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and quote is None


def test_alert_rules_structure():
    rs = rules()
    alerts = [r["alert"] for r in rs]
    assert len(alerts) == len(set(alerts)), "alert names must be unique"
    for r in rs:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, r["alert"]
        assert re.fullmatch(r"Labwitness[A-Za-z0-9]+", r["alert"])
        assert isinstance(r["expr"], str) and r["expr"].strip() and balanced(r["expr"]), r["alert"]
        assert DURATION_RE.match(str(r["for"])), (r["alert"], r["for"])
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        summary = r["annotations"]["summary"]
        zh, _, en = summary.partition(" / ")  # zh-CN first, English second
        assert CJK_RE.search(zh) and en and not CJK_RE.search(en) and re.search("[A-Za-z]{3,}", en), r["alert"]
        assert r["annotations"].get("description"), r["alert"]
        for text in r["annotations"].values():
            assert text.count("{{") == text.count("}}"), r["alert"]


@pytest.mark.parametrize("alert, severity, metric", [
    ("LabwitnessCameraOffline", "critical", "labwitness_camera_offline"),
    ("LabwitnessSpoolFull", "critical", "labwitness_spool_full"),
    ("LabwitnessIntegrityFindingOpen", "critical", "labwitness_integrity_findings_open"),
    ("LabwitnessRetentionNotEnforced", "critical", "labwitness_retention_enforced"),
    ("LabwitnessStorageRunwayShort", "critical", "labwitness_storage_runway_days"),
    ("LabwitnessLockVerificationFailed", "critical", "labwitness_lock_verified_ratio"),
    ("LabwitnessLockVerifyJobFailed", "critical", "labwitness_job_last_status"),
    ("LabwitnessLockFindingOpen", "critical", "labwitness_integrity_findings_open"),
    ("LabwitnessSealLate", "critical", "labwitness_seal_age_seconds"),
    ("LabwitnessCoverageLow24h", "warning", "labwitness_camera_coverage_ratio"),
    ("LabwitnessCameraClockOffset", "warning", "labwitness_camera_clock_offset_seconds"),
    ("LabwitnessUploadBacklogGrowing", "warning", "labwitness_spool_backlog_segments"),
    ("LabwitnessJobNotSucceeding", "warning", "labwitness_job_last_success_timestamp_seconds"),
    ("LabwitnessWitnessBehind", "warning", "labwitness_witness_oldest_undelivered_age_seconds"),
    ("LabwitnessWitnessFarBehind", "critical", "labwitness_witness_oldest_undelivered_age_seconds"),
    ("LabwitnessWitnessRefused", "warning", "labwitness_witness_refused"),
])
def test_expected_alerts(alert, severity, metric):
    by = {r["alert"]: r for r in rules()}
    assert alert in by
    assert by[alert]["labels"]["severity"] == severity and metric in by[alert]["expr"]


def test_offline_alert_waits_five_minutes():
    by = {r["alert"]: r for r in rules()}
    assert by["LabwitnessCameraOffline"]["for"] == "5m"
    assert "0.99" in by["LabwitnessCoverageLow24h"]["expr"] and 'window="24h"' in by["LabwitnessCoverageLow24h"]["expr"]
    # the alert fires past the same bound as the health warning (retention.health: OSD vs index time)
    from retention.health import Thresholds

    assert f"> {Thresholds().clock_offset_warning_s:g}" in by["LabwitnessCameraClockOffset"]["expr"]


def test_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] == "labwitness-retention" and dash["title"] and dash["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"area", "camera"} <= set(variables)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        assert CJK_RE.search(p["title"]) and " / " in p["title"], p["title"]
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
            for t in p["targets"]:
                assert t["refId"] and balanced(t["expr"]), p["title"]
    refs = [[t["refId"] for t in p.get("targets", [])] for p in dash["panels"]]
    assert all(len(r) == len(set(r)) for r in refs)


def test_only_exported_metrics_are_referenced():
    texts = [r["expr"] for r in rules()]
    texts += [v for r in rules() for v in r["annotations"].values()]  # templates may query, too
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    texts += dashboard_exprs(dash)
    used = {m for t in texts for m in METRIC_RE.findall(t)}
    assert used <= ALLOWED, sorted(used - ALLOWED)
    # and the samples between them show most of what is exported
    assert len(used & ALLOWED) >= len(METRICS) - 1, sorted(ALLOWED - used)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_rules():
    r = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
