"""``GET /api/v1/compliance?month=2026-11&format=html|csv|json`` — the monthly
compliance report (operations, and admins): JSON for scripts, a printable HTML
page, or a CSV sheet to download.  A malformed month or one that has not begun
is a 422 problem+json."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from labwitness.clock import utc_ms
from retention.compliance import compliance_report
from retention.compliance_model import ComplianceThresholds
from retention.compliance_render import render_csv, render_html

from api.auth import Operations
from api.deps import AuditDep, ClockDep, IndexDep, PolicyDep, SettingsDep

router = APIRouter(prefix="/api/v1")

MONTH_PATTERN = r"^[0-9]{4}-[0-9]{2}$"


@router.get("/compliance", responses={200: {"content": {"application/json": {}, "text/html": {}, "text/csv": {}}}})
def compliance(index: IndexDep, audit: AuditDep, clock: ClockDep, policy: PolicyDep, settings: SettingsDep,
               who: Operations,
               month: Annotated[str, Query(pattern=MONTH_PATTERN, description="calendar month in the lab's time zone, e.g. 2026-11")],
               format: Annotated[Literal["json", "html", "csv"], Query(description="json | html | csv")] = "json",
               download: Annotated[bool, Query(description="as an attachment (csv always is)")] = False) -> Response:
    """合规报告 / Compliance report of one calendar month (lab time zone; the current month up to now)."""
    tz = ZoneInfo(settings.timezone)
    report = compliance_report(index.engine, month, tz, utc_ms(clock.now()), thresholds=ComplianceThresholds(),
                               policy=policy)
    audit.append(who.actor, "compliance.report", month, {"format": format, "verdict": report.verdict.level}, who.role)
    disposition = "attachment" if download or format == "csv" else "inline"
    headers = {"Content-Disposition": f'{disposition}; filename="labwitness-compliance-{month}.{format}"'}
    if format == "html":
        return HTMLResponse(render_html(report), headers=headers)
    if format == "csv":
        return Response(render_csv(report).encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)
    return JSONResponse(report.to_json(), headers=headers)
