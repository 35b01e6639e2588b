"""The compliance report as a printable HTML page and as a CSV sheet.

HTML: one self-contained page (inline CSS, A4 print styles), every label
zh-CN first and English second, times in the lab's time zone; rendered with
Jinja2 with autoescaping on, so camera and area names are always text.
CSV: one row per camera, UTF-8 with a BOM so Excel shows Chinese correctly;
cells that a spreadsheet would take for a formula are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io

from jinja2 import Environment, StrictUndefined

from retention.compliance_model import JOB_NAMES, VERDICT_LABELS, ComplianceReport

REGULATION = ("《广西壮族自治区建设工程质量检测信息化管理规定》（2015）第七条：主要检测区域应安装视频监控，"
              "录像保存不少于 6 个月 / Guangxi 2015 regulation on construction testing information, Art. 7: "
              "video surveillance of the main testing areas, recordings kept for no less than 6 months")

GAP_REASONS = {
    "timeout": "超时", "refused": "连接被拒", "auth_failed": "认证失败", "not_rtsp": "非 RTSP", "no_video": "无视频",
    "unsupported_codec": "编码不支持", "unreachable": "不可达", "stream_ended": "码流中断", "decode_error": "解码错误",
    "spool_full": "缓存已满", "recorder_down": "录制进程中断", "recorder_stopped": "录制已停止",
    "tls_untrusted": "TLS 证书已更改",
}
CONTENT_KINDS = {"blackout": "黑屏", "frozen": "画面冻结", "obscured": "遮挡/失焦", "moved": "移位"}
FINDING_KINDS = {"missing": "对象缺失", "altered": "内容被改", "lock_missing": "未锁定", "lock_mismatch": "锁定不符",
                 "orphan_object": "孤立对象", "orphan_row": "孤立索引", "unreadable": "无法读取"}
JOB_STATUS = {"ok": "正常", "warning": "警告", "critical": "严重", "failed": "失败", "refused": "拒绝执行", "running": "运行中"}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.2f}%"


def _dur(ms: int | None) -> str:
    """h:mm:ss (hours may exceed 24)."""
    if ms is None:
        return "—"
    s = int(round(ms / 1000))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _bi(mapping: dict[str, str], key: str | None) -> str:
    if key is None:
        return "—"
    return f"{mapping[key]} / {key}" if key in mapping else key


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>视频监控合规报告 / Video surveillance compliance report {{ r.month }}</title>
<style>
  @page { size: A4 landscape; margin: 12mm 10mm 14mm 10mm; }
  * { box-sizing: border-box; }
  body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif;
         font-size: 10pt; color: #111; margin: 0 auto; max-width: 297mm; padding: 8mm; }
  h1 { font-size: 16pt; margin: 0 0 2mm; }
  h2 { font-size: 12pt; margin: 6mm 0 2mm; border-bottom: 1.5pt solid #333; padding-bottom: 1mm; page-break-after: avoid; }
  h3 { font-size: 10.5pt; margin: 4mm 0 1mm; page-break-after: avoid; }
  .en { color: #555; font-weight: normal; }
  table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; }
  th, td { border: 0.5pt solid #888; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
  th { background: #eee; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  tr { page-break-inside: avoid; }
  thead { display: table-header-group; }
  .meta td { border: none; padding: 0.5mm 3mm 0.5mm 0; }
  .verdict { display: inline-block; padding: 0.5mm 2mm; border-radius: 1mm; font-weight: 700; }
  .v-compliant { background: #d9f2d9; color: #135e13; }
  .v-partial { background: #fff1c2; color: #6b4e00; }
  .v-not_compliant { background: #f8d0d0; color: #8a1010; }
  .badge { display: inline-block; border: 1pt solid #b36b00; color: #b36b00; padding: 0 2mm; margin-left: 2mm; font-weight: 700; }
  ul.reasons { margin: 1mm 0 0 4mm; padding: 0; }
  .small { font-size: 8.5pt; color: #444; }
  footer { margin-top: 8mm; border-top: 0.5pt solid #888; padding-top: 2mm; font-size: 8.5pt; color: #333; }
  @media print { body { padding: 0; max-width: none; } a { color: inherit; text-decoration: none; } }
</style>
</head>
<body>
<header>
  <h1>检测区域视频监控合规报告 <span class="en">/ Testing-area video surveillance compliance report</span></h1>
  <table class="meta">
    <tr><td>报告期间 <span class="en">/ Period</span></td>
        <td>{{ r.local(r.start_ms, "%Y-%m-%d %H:%M") }} — {{ r.local(r.until_ms, "%Y-%m-%d %H:%M") }} ({{ r.timezone }})
        {% if r.partial_month %}<span class="badge">部分月份（截至生成时间） / partial month (up to generation time)</span>{% endif %}</td></tr>
    <tr><td>月份 <span class="en">/ Month</span></td><td>{{ r.month }}</td></tr>
    <tr><td>生成时间 <span class="en">/ Generated</span></td><td>{{ r.local(r.generated_ms) }} ({{ r.timezone }})</td></tr>
    <tr><td>结论 <span class="en">/ Verdict</span></td>
        <td><span class="verdict v-{{ r.verdict.level }}">{{ r.verdict.label }}</span>
        {% if r.verdict.reasons %}<ul class="reasons">{% for x in r.verdict.reasons %}<li>{{ x }}</li>{% endfor %}</ul>{% endif %}</td></tr>
    <tr><td>判定阈值 <span class="en">/ Thresholds</span></td>
        <td class="small">覆盖率 / coverage ≥ {{ pct(t.coverage_ok) }}（≥ {{ pct(t.coverage_partial) }} 部分合规 / partial）；
        有效画面 / usable ≥ {{ pct(t.usable_ok) }}（≥ {{ pct(t.usable_partial) }} 部分合规 / partial）；
        {% if t.max_gap_s is not none %}单次中断 / single gap ≤ {{ dur(t.max_gap_s * 1000) }}；{% endif %}
        最早录像 / oldest footage ≥ {{ t.required_days }} 天 / days</td></tr>
  </table>
</header>

<h2>一、检测区域 <span class="en">/ Testing areas</span></h2>
<table>
  <thead><tr>
    <th>区域 <span class="en">/ Area</span></th><th>摄像机 <span class="en">/ Cameras</span></th>
    <th>覆盖率 <span class="en">/ Coverage</span></th><th>有效画面 <span class="en">/ Usable</span></th>
    <th>中断 <span class="en">/ Gaps</span></th><th>中断时长 <span class="en">/ Gap time</span></th>
    <th>锁定已校验 <span class="en">/ Lock verified</span></th><th>未解决问题 <span class="en">/ Open findings</span></th>
    <th>结论 <span class="en">/ Verdict</span></th>
  </tr></thead>
  <tbody>
  {% for a in r.areas %}
  <tr>
    <td>{{ a.name }}{% if a.area_id %}<br><span class="small">{{ a.area_id }}</span>{% endif %}</td>
    <td class="num">{{ a.counted_ids|length }} / {{ a.camera_ids|length }}</td>
    <td class="num">{{ pct(a.coverage) }}</td><td class="num">{{ pct(a.usable_coverage) }}</td>
    <td class="num">{{ a.gap_count }}</td><td class="num">{{ dur(a.gap_ms) }}</td>
    <td class="num">{{ a.lock_verified }} / {{ a.lock_segments }} ({{ pct(a.lock_verified_ratio) }})</td>
    <td class="num">{{ a.integrity_open }}</td>
    <td><span class="verdict v-{{ a.verdict.level }}">{{ a.verdict.label }}</span>
      {% if a.verdict.reasons %}<ul class="reasons small">{% for x in a.verdict.reasons %}<li>{{ x }}</li>{% endfor %}</ul>{% endif %}</td>
  </tr>
  {% else %}
  <tr><td colspan="9">没有登记的检测区域 / no testing areas registered</td></tr>
  {% endfor %}
  </tbody>
</table>
<p class="small">摄像机列“计入/列出”：停用或已移除的摄像机列出但不计入结论。 / Cameras "counted / listed": disabled or removed cameras are listed but not counted in the verdict.</p>

<h2>二、摄像机 <span class="en">/ Cameras</span></h2>
<table>
  <thead><tr>
    <th>摄像机 <span class="en">/ Camera</span></th><th>区域 <span class="en">/ Area</span></th>
    <th>统计时段 <span class="en">/ Counted period</span></th>
    <th>录像时长 <span class="en">/ Recorded</span></th><th>覆盖率 <span class="en">/ Coverage</span></th>
    <th>不可用画面 <span class="en">/ Unusable</span></th><th>有效画面 <span class="en">/ Usable</span></th>
    <th>中断 <span class="en">/ Gaps</span></th><th>无记录 <span class="en">/ Unaccounted</span></th>
    <th>最早录像 <span class="en">/ Oldest footage</span></th>
    <th>结论 <span class="en">/ Verdict</span></th>
  </tr></thead>
  <tbody>
  {% for c in r.cameras %}
  <tr>
    <td>{{ c.camera_id }}{% if c.name %}<br><span class="small">{{ c.name }}</span>{% endif %}</td>
    <td>{{ area_names.get(c.area_id, c.area_id) or "—" }}</td>
    <td class="small">{{ r.local(c.start_ms, "%m-%d %H:%M") }} — {{ r.local(c.end_ms, "%m-%d %H:%M") }}</td>
    <td class="num">{{ dur(c.recorded_ms) }}</td><td class="num">{{ pct(c.coverage) }}</td>
    <td class="num">{{ dur(c.unusable_ms) }}{% for k, v in c.unusable_by_kind.items() %}<br><span class="small">{{ bi(content_kinds, k) }} {{ dur(v) }}</span>{% endfor %}</td>
    <td class="num">{{ pct(c.usable_coverage) }}</td>
    <td class="num">{{ c.gaps.count }} · {{ dur(c.gaps.total_ms) }}</td>
    <td class="num">{{ dur(c.unaccounted_ms) }}</td>
    <td class="num">{% if c.oldest_start_ms is not none %}{{ r.local(c.oldest_start_ms, "%Y-%m-%d") }}<br>
      <span class="small">{{ "%.1f"|format(c.oldest_age_days) }} 天 / days（需 / need {{ "%.0f"|format(c.expected_days) }}）</span>{% else %}—{% endif %}</td>
    <td><span class="verdict v-{{ c.verdict.level }}">{{ c.verdict.label }}</span>
      {% if c.verdict.reasons or c.notes %}<ul class="reasons small">
      {% for x in c.verdict.reasons %}<li>{{ x }}</li>{% endfor %}
      {% for x in c.notes %}<li><i>{{ x }}</i></li>{% endfor %}</ul>{% endif %}</td>
  </tr>
  {% else %}
  <tr><td colspan="11">本期没有摄像机 / no cameras in this period</td></tr>
  {% endfor %}
  </tbody>
</table>

<h2>三、录像中断 <span class="en">/ Recording gaps</span></h2>
{% set ns = namespace(any=false) %}
{% for c in r.cameras if c.gaps.count %}{% set ns.any = true %}
<h3>{{ c.camera_id }}{% if c.name %} — {{ c.name }}{% endif %}
  <span class="en">({{ c.gaps.count }} 次 / gaps, {{ dur(c.gaps.total_ms) }})</span></h3>
<p class="small">按原因 / by reason:
  {% for reason, s in c.gaps.by_reason.items() %}{{ bi(gap_reasons, reason) }} × {{ s.count }} ({{ dur(s.duration_ms) }}){% if not loop.last %}；{% endif %}{% endfor %}</p>
<table>
  <thead><tr><th>开始 <span class="en">/ Start</span></th><th>结束 <span class="en">/ End</span></th>
    <th>本期内时长 <span class="en">/ Duration in period</span></th><th>原因 <span class="en">/ Reason</span></th></tr></thead>
  <tbody>
  {% for g in c.gaps.longest %}
  <tr><td>{{ r.local(g.start_ms) }}</td><td>{{ r.local(g.end_ms) }}</td><td class="num">{{ dur(g.duration_ms) }}</td>
      <td>{{ bi(gap_reasons, g.reason) }}</td></tr>
  {% endfor %}
  </tbody>
</table>
{% endfor %}
{% if not ns.any %}<p>本期没有记录的中断 / no recorded gaps in this period</p>{% endif %}

<h2>四、锁定与完整性 <span class="en">/ Object Lock and integrity</span></h2>
<table>
  <thead><tr>
    <th>摄像机 <span class="en">/ Camera</span></th><th>片段 <span class="en">/ Segments</span></th>
    <th>锁定已校验 <span class="en">/ Lock verified</span></th>
    <th>最早保留期限 <span class="en">/ Min retain-until</span></th>
    <th>超出法定期限 <span class="en">/ Margin over end + 6 months</span></th>
    <th>锁定问题 <span class="en">/ Lock problems</span></th>
    <th>未解决问题 <span class="en">/ Open findings</span></th><th>已解决 <span class="en">/ Resolved</span></th>
  </tr></thead>
  <tbody>
  {% for c in r.cameras %}
  <tr>
    <td>{{ c.camera_id }}</td><td class="num">{{ c.lock.segments }}</td>
    <td class="num">{{ c.lock.verified }} ({{ pct(c.lock.verified_ratio) }})</td>
    <td class="num">{{ r.local(c.lock.min_retain_until_ms, "%Y-%m-%d") or "—" }}</td>
    <td class="num">{% if c.lock.min_margin_days is not none %}{{ "%.1f"|format(c.lock.min_margin_days) }} 天 / days{% else %}—{% endif %}</td>
    <td class="small">{% if c.lock.ok %}无 / none{% else %}
      {% if c.lock.missing_retain_until %}无保留期限 / no retain-until: {{ c.lock.missing_retain_until }}<br>{% endif %}
      {% if c.lock.not_compliance_mode %}非 COMPLIANCE 模式 / not COMPLIANCE: {{ c.lock.not_compliance_mode }}<br>{% endif %}
      {% if c.lock.below_legal_days %}短于法定期限的天数 / days below legal minimum: {{ c.lock.below_legal_days }}<br>{% endif %}
      {% if c.lock.open_lock_findings %}校验失败 / verification failed: {{ c.lock.open_lock_findings }}{% endif %}{% endif %}</td>
    <td class="small">{% for k, n in c.integrity.open_by_kind.items() %}{{ bi(finding_kinds, k) }}: {{ n }}<br>{% else %}0{% endfor %}</td>
    <td class="small">{% for k, n in c.integrity.resolved_by_kind.items() %}{{ bi(finding_kinds, k) }}: {{ n }}<br>{% else %}0{% endfor %}</td>
  </tr>
  {% endfor %}
  </tbody>
</table>
<p>全部片段 / all segments: {{ r.lock.segments }}，锁定已校验 / lock verified {{ r.lock.verified }} ({{ pct(r.lock.verified_ratio) }})；
  本期发现问题 / findings in period: 未解决 / open {{ r.integrity.open }}，已解决 / resolved {{ r.integrity.resolved }}
  {% if r.integrity.open_by_kind %}（{% for k, n in r.integrity.open_by_kind.items() %}{{ bi(finding_kinds, k) }}: {{ n }}{% if not loop.last %}，{% endif %}{% endfor %}）{% endif %}</p>

<h3>校验任务 <span class="en">/ Verification jobs</span></h3>
<table>
  <thead><tr><th>任务 <span class="en">/ Job</span></th><th>本期运行 <span class="en">/ Runs in period</span></th>
    <th>最近一次 <span class="en">/ Latest run</span></th><th>状态 <span class="en">/ Status</span></th></tr></thead>
  <tbody>
  {% for j in r.jobs %}
  <tr><td>{{ job_names.get(j.job, j.job) }}</td>
      <td class="small">{% for s, n in j.runs_by_status.items() %}{{ bi(job_status, s) }}: {{ n }}{% if not loop.last %}，{% endif %}{% else %}0{% endfor %}</td>
      <td>{{ r.local(j.latest_started_ms) or "—" }}</td><td>{{ bi(job_status, j.latest_status) }}</td></tr>
  {% endfor %}
  </tbody>
</table>

<footer>
  <p>录像以 S3 对象锁定（Object Lock）COMPLIANCE 模式保存：每个片段锁定至其结束时间后 {{ r.retention_months }} 个自然月另加
  {{ r.retention_margin_days }} 天余量，期间任何人（包括管理员）都无法删除或缩短保留期。
  / Footage is stored under S3 Object Lock in COMPLIANCE mode: each segment is locked until {{ r.retention_months }}
  calendar months plus a {{ r.retention_margin_days }}-day margin after its end; nobody, administrators included,
  can delete it or shorten its retention before then.</p>
  <p>{{ regulation }}</p>
  <p class="small">时间均为 {{ r.timezone }} / all times in {{ r.timezone }} · labwitness</p>
</footer>
</body>
</html>
"""

_env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_template = _env.from_string(_TEMPLATE)


def render_html(report: ComplianceReport) -> str:
    """A self-contained printable page (A4 landscape)."""
    area_names = {a.area_id: a.name for a in report.areas if a.area_id}
    return _template.render(
        r=report, t=report.thresholds, pct=_pct, dur=_dur, bi=_bi, area_names=area_names, gap_reasons=GAP_REASONS,
        content_kinds=CONTENT_KINDS, finding_kinds=FINDING_KINDS, job_names=JOB_NAMES, job_status=JOB_STATUS,
        regulation=REGULATION)


CSV_COLUMNS = [
    ("camera_id", "摄像机 / camera"), ("name", "名称 / name"), ("area_id", "区域编号 / area id"),
    ("area_name", "区域 / area"), ("counted", "计入结论 / counted"), ("period_start", "统计开始 / period start"),
    ("period_end", "统计结束 / period end"), ("period_s", "统计时长秒 / period s"), ("recorded_s", "录像秒 / recorded s"),
    ("coverage_pct", "覆盖率% / coverage %"), ("unusable_s", "不可用秒 / unusable s"),
    ("usable_coverage_pct", "有效画面% / usable coverage %"), ("gaps", "中断次数 / gaps"),
    ("gap_s", "中断秒 / gap s"), ("longest_gap_s", "最长中断秒 / longest gap s"),
    ("unaccounted_s", "无记录秒 / unaccounted s"), ("oldest_footage", "最早录像 / oldest footage"),
    ("oldest_age_days", "最早录像天数 / oldest age days"), ("required_days", "应保留天数 / required days"),
    ("lock_segments", "片段数 / segments"), ("lock_verified", "锁定已校验 / lock verified"),
    ("lock_verified_pct", "校验比例% / verified %"), ("min_lock_margin_days", "锁定余量天 / lock margin days"),
    ("findings_open", "未解决问题 / open findings"), ("findings_resolved", "已解决问题 / resolved findings"),
    ("verdict", "结论 / verdict"), ("verdict_label", "结论说明 / verdict label"), ("reasons", "原因 / reasons"),
    ("notes", "备注 / notes"),
]


#: columns holding text that came from people (names, ids): guarded against formula injection
_TEXT = {"camera_id", "name", "area_id", "area_name", "reasons", "notes"}


def _cell(key: str, v) -> str:
    """Text for a CSV cell; text starting with = + - @ (tab, CR) would make Excel run it as a formula."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    s = str(v)
    if key in _TEXT and s and s[0] in "=+-@\t\r":
        return "'" + s
    return s


def _num(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def render_csv(report: ComplianceReport) -> str:
    """One row per camera; starts with a UTF-8 BOM (U+FEFF) for Excel; CRLF line ends."""
    area_names = {a.area_id: a.name for a in report.areas if a.area_id}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([label for _, label in CSV_COLUMNS])
    for c in report.cameras:
        row = {
            "camera_id": c.camera_id, "name": c.name, "area_id": c.area_id, "area_name": area_names.get(c.area_id, ""),
            "counted": c.counted, "period_start": report.local(c.start_ms), "period_end": report.local(c.end_ms),
            "period_s": _num(c.period_ms / 1000), "recorded_s": _num(c.recorded_ms / 1000),
            "coverage_pct": _num(None if c.coverage is None else c.coverage * 100, 4),
            "unusable_s": _num(c.unusable_ms / 1000),
            "usable_coverage_pct": _num(None if c.usable_coverage is None else c.usable_coverage * 100, 4),
            "gaps": c.gaps.count, "gap_s": _num(c.gaps.total_ms / 1000), "longest_gap_s": _num(c.gaps.longest_ms / 1000),
            "unaccounted_s": _num(c.unaccounted_ms / 1000), "oldest_footage": report.local(c.oldest_start_ms),
            "oldest_age_days": _num(c.oldest_age_days, 1), "required_days": _num(c.expected_days, 0),
            "lock_segments": c.lock.segments, "lock_verified": c.lock.verified,
            "lock_verified_pct": _num(None if c.lock.verified_ratio is None else c.lock.verified_ratio * 100, 2),
            "min_lock_margin_days": _num(c.lock.min_margin_days, 1), "findings_open": c.integrity.open,
            "findings_resolved": c.integrity.resolved, "verdict": c.verdict.level,
            "verdict_label": VERDICT_LABELS[c.verdict.level], "reasons": "; ".join(c.verdict.reasons),
            "notes": "; ".join(c.notes),
        }
        w.writerow([_cell(k, row[k]) for k, _ in CSV_COLUMNS])
    return "\ufeff" + buf.getvalue()
