"""Reports from the command line:

    labwitness report compliance [--month 2026-11] [--out FILE.html|FILE.csv|FILE.json]
                                 [--format html|csv|json] [--json] [--check]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer

from api.cli.common import console, fail, index_only, print_json, settings_or_exit, table
from labwitness.clock import SystemClock, utc_ms
from labwitness.errors import ConfigError, LabwitnessError
from retention.compliance import compliance_report
from retention.compliance_render import render_csv, render_html
from retention.months import parse_month, previous_month
from retention.policy import RetentionPolicy

report_app = typer.Typer(help="报告 / reports", no_args_is_help=True)

FORMATS = ("html", "csv", "json")
#: exit codes with --check (as `labwitness health`: 0 ok, 1 warning, 2 critical)
CHECK_EXIT = {"compliant": 0, "partial": 1, "not_compliant": 2}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.2f}%"


@report_app.command("compliance")
def compliance(
    month: Annotated[Optional[str], typer.Option(help="YYYY-MM in the lab's time zone (default: the last complete month)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to FILE (.html, .csv or .json)")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="html | csv | json (default: from --out, else a summary)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="same as --format json")] = False,
    check: Annotated[bool, typer.Option("--check", help="exit 0 compliant, 1 partial, 2 not compliant")] = False,
) -> None:
    """合规报告 / Monthly compliance report: coverage, usable picture, gaps, oldest footage, Object Lock and
    integrity per area and camera, with a verdict.  Without --out/--format prints a summary; HTML is a
    printable page (A4), CSV opens in Excel (UTF-8 with BOM).  Exit 0 unless --check."""
    settings = settings_or_exit()
    tz = ZoneInfo(settings.timezone)
    now_ms = utc_ms(SystemClock().now())
    if json_out:
        fmt = fmt or "json"
    if fmt is None and out is not None:
        fmt = {".html": "html", ".htm": "html", ".csv": "csv", ".json": "json"}.get(out.suffix.lower())
    if fmt is not None and fmt not in FORMATS:
        fail(ConfigError(f"--format 应为 html、csv 或 json / --format must be html, csv or json (got {fmt!r})"))
    if out is not None and fmt is None:
        fail(ConfigError(f"无法从文件名判断格式，请加 --format / cannot tell the format from {out}; add --format"))
    month = month or previous_month(now_ms, tz)
    try:
        parse_month(month)
        with index_only(settings) as ix:
            report = compliance_report(ix.registry.engine, month, tz, now_ms,
                                       policy=RetentionPolicy(settings.retention_months, settings.retention_margin_days))
    except LabwitnessError as e:  # a malformed or future month is a ValidationError: exit 2 (api.cli.common)
        fail(e)

    if fmt is not None:
        text = {"html": render_html, "csv": render_csv,
                "json": lambda r: json.dumps(r.to_json(), ensure_ascii=False, indent=2) + "\n"}[fmt](report)
        if out is None:
            if fmt == "json":
                print_json(report.to_json())
            else:
                typer.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8", newline="")
            console.print(f"已写入 / written: {out} ({report.verdict.label})")
    else:
        colour = {"compliant": "green", "partial": "yellow", "not_compliant": "red"}[report.verdict.level]
        span = f"{report.local(report.start_ms, '%Y-%m-%d %H:%M')} — {report.local(report.until_ms, '%Y-%m-%d %H:%M')}"
        console.print(f"{month} ({span} {report.timezone}{', 部分月份 / partial month' if report.partial_month else ''}): "
                      f"[{colour}]{report.verdict.label}[/]")
        for reason in report.verdict.reasons:
            console.print(f"  - {reason}")
        table("检测区域 / areas", ["area", "name", "cameras", "coverage", "usable", "gaps", "open findings", "verdict"],
              [[a.area_id or "—", a.name, f"{len(a.counted_ids)}/{len(a.camera_ids)}", _pct(a.coverage),
                _pct(a.usable_coverage), a.gap_count, a.integrity_open, a.verdict.label] for a in report.areas])
        table("摄像机 / cameras", ["camera", "area", "coverage", "usable", "gaps", "longest gap s", "oldest days",
                                  "lock verified", "open findings", "verdict"],
              [[c.camera_id, c.area_id or "—", _pct(c.coverage), _pct(c.usable_coverage), c.gaps.count,
                round(c.gaps.longest_ms / 1000), "—" if c.oldest_age_days is None else f"{c.oldest_age_days:.1f}",
                _pct(c.lock.verified_ratio), c.integrity.open, c.verdict.label] for c in report.cameras])
    if check:
        raise typer.Exit(CHECK_EXIT[report.verdict.level])
