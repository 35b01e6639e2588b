"""The compliance verdict rules: pure functions of the report's numbers and the thresholds.

Each rule yields (level, reason) pairs, the reason zh-CN first and English
second; a verdict is the worst level found with every reason, in order.

* a camera (:func:`camera_verdict`): recorded and usable coverage against the
  "ok" and "partial" thresholds, the longest gap, the lock and integrity of its
  footage (:func:`keeping_problems`), the oldest retained footage reaching back
  far enough;
* an area (:func:`area_verdict`): the worst of its counted cameras'; none
  counted is not compliant;
* the report (:func:`report_verdict`): the worst of its areas', plus the kept
  footage of cameras not counted, open findings on footage of cameras without
  data this period and bucket-level ones, and the lock verification and
  integrity audit having completed a run in the period.
"""

from __future__ import annotations

from typing import Sequence

from retention.compliance_model import (
    COMPLIANT, JOB_NAMES, LEVELS, LOCK_KINDS, NOT_COMPLIANT, PARTIAL, AreaReport, CameraReport, ComplianceThresholds,
    IntegrityStats, JobStatus, Verdict,
)


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def worst(levels) -> str:
    """The worst of verdict levels (compliant when there are none)."""
    return max(levels, key=LEVELS.index, default=COMPLIANT)


def keeping_problems(c: CameraReport) -> list[tuple[str, str]]:
    """Lock and integrity problems of the camera's footage: these count even for a camera that is
    disabled or removed (its footage is still kept, and must be kept right)."""
    found: list[tuple[str, str]] = []
    lk = c.lock
    if lk.missing_retain_until:
        found.append((NOT_COMPLIANT, f"{lk.missing_retain_until} 个片段没有保留期限 / {lk.missing_retain_until} "
                                     "segments have no retain-until"))
    if lk.not_compliance_mode:
        found.append((NOT_COMPLIANT, f"{lk.not_compliance_mode} 个片段未以 COMPLIANCE 模式锁定 / "
                                     f"{lk.not_compliance_mode} segments are not locked in COMPLIANCE mode"))
    if lk.below_legal_days:
        found.append((NOT_COMPLIANT, f"{lk.below_legal_days} 天的片段锁定期短于结束后 6 个月 / segments of "
                                     f"{lk.below_legal_days} days are locked for less than end + 6 months"))
    if lk.open_lock_findings:
        found.append((NOT_COMPLIANT, f"锁定校验失败 {lk.open_lock_findings} 项未解决 / {lk.open_lock_findings} "
                                     "open lock verification findings"))
    ig = c.integrity
    other = {k: n for k, n in ig.open_critical_by_kind.items() if k not in LOCK_KINDS}  # lock kinds: said above
    if other:
        n = sum(other.values())
        found.append((NOT_COMPLIANT, f"完整性问题 {n} 项未解决 / {n} open critical integrity findings "
                                     f"({', '.join(sorted(other))})"))
    if ig.open_warning:
        found.append((PARTIAL, f"完整性警告 {ig.open_warning} 项未解决 / {ig.open_warning} open integrity warnings"))
    return found


def camera_verdict(c: CameraReport, t: ComplianceThresholds) -> Verdict:
    """A camera's verdict from its numbers (the verdict field of ``c`` is not read)."""
    found: list[tuple[str, str]] = []
    if c.period_ms <= 0:
        return Verdict(COMPLIANT, ())
    cov, usable = c.coverage or 0.0, c.usable_coverage or 0.0
    if cov < t.coverage_ok:
        found.append((PARTIAL if cov >= t.coverage_partial else NOT_COMPLIANT,
                      f"录像覆盖率 {_pct(cov)} 低于 {_pct(t.coverage_ok)} / coverage {_pct(cov)} below {_pct(t.coverage_ok)}"))
    if usable < t.usable_ok:
        found.append((PARTIAL if usable >= t.usable_partial else NOT_COMPLIANT,
                      f"有效画面覆盖率 {_pct(usable)} 低于 {_pct(t.usable_ok)} / usable coverage {_pct(usable)} "
                      f"below {_pct(t.usable_ok)}"))
    if t.max_gap_s is not None and c.gaps.longest_ms > t.max_gap_s * 1000:
        found.append((PARTIAL, f"最长中断 {c.gaps.longest_ms / 3_600_000:.2f} 小时，超过 {t.max_gap_s / 3600:g} 小时 / "
                               f"longest gap {c.gaps.longest_ms / 3_600_000:.2f} h exceeds {t.max_gap_s / 3600:g} h"))
    found += keeping_problems(c)
    if c.oldest_age_days is None:
        if c.expected_days > t.oldest_tolerance_days:
            found.append((NOT_COMPLIANT, "没有任何已存储的录像 / no stored footage at all"))
    elif c.oldest_age_days + t.oldest_tolerance_days < c.expected_days:
        found.append((NOT_COMPLIANT, f"最早录像仅 {c.oldest_age_days:.1f} 天前，应保留 {c.expected_days:.0f} 天 / "
                                     f"oldest footage is {c.oldest_age_days:.1f} days old, "
                                     f"{c.expected_days:.0f} days must be kept"))
    return _verdict(found)



def area_verdict(counted: Sequence[CameraReport]) -> Verdict:
    """An area's verdict from the cameras counted in it."""
    if not counted:
        return Verdict(NOT_COMPLIANT, ("区域内没有启用的摄像机 / no enabled camera in this area",))
    reasons = tuple(f"{c.camera_id}: {r}" for c in counted for r in c.verdict.reasons)
    return Verdict(worst(c.verdict.level for c in counted), reasons)


def report_verdict(areas: Sequence[AreaReport], cameras: Sequence[CameraReport], unlisted: IntegrityStats,
                   bucket: IntegrityStats, jobs: Sequence[JobStatus], t: ComplianceThresholds) -> Verdict:
    """The report's verdict.  ``unlisted``: findings of the period on footage of cameras
    that are not in the report (no data this period); ``bucket``: bucket-level findings."""
    found: list[tuple[str, str]] = []
    for a in areas:
        if a.verdict.level != COMPLIANT:
            found.append((a.verdict.level, f"{a.name or a.area_id or '未分配 / unassigned'}: {a.verdict.label}"))
    for c in cameras:
        if not c.counted:
            found += [(level, f"{c.camera_id}: {text}") for level, text in keeping_problems(c)]
    if unlisted.open_critical:
        found.append((NOT_COMPLIANT, f"其他摄像机的完整性问题 {unlisted.open_critical} 项未解决 / {unlisted.open_critical} "
                                     f"open findings on footage of cameras without data this period "
                                     f"({', '.join(sorted(unlisted.open_by_kind))})"))
    if bucket.open_critical:
        found.append((NOT_COMPLIANT, f"存储桶级问题 {bucket.open_critical} 项未解决 / {bucket.open_critical} open "
                                     f"bucket-level findings ({', '.join(sorted(bucket.open_by_kind))})"))
    if t.require_jobs:
        for j in jobs:
            if not j.completed_in_period:
                found.append((PARTIAL, f"{JOB_NAMES[j.job]}: 本期没有完成的运行 / no completed run in this period"))
    return _verdict(found)


def _verdict(found: list[tuple[str, str]]) -> Verdict:
    return Verdict(worst(level for level, _ in found), tuple(text for _, text in found))
