"""Inspector pages: find test records, a report's footage (timeline with gaps,
player), evidence export with progress, download and QR code.

Footage is played from the API itself (``/api/v1/segments/{id}/media`` with
HTTP Range, through the session relay), so every play is the API's audited
``footage.play``; opening a report is audited as ``report.footage`` like
``GET /api/v1/reports/{no}/footage``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from index.records import RecordStore
from labwitness.clock import from_ms, utc_ms
from labwitness.errors import LabwitnessError, NotFoundError
from labwitness.ids import number_problem

from api.deps import AuditDep, ExporterDep, RecordsDep, RegistryDep, SettingsDep
from api.evidence import new_package_id, qr_png
from api.footage_json import clips_next_url, window_clips_next
from api.web import timeline
from api.web.pages import not_found_page, problem_text, redirect
from api.web.render import SECURITY_HEADERS, fragment, render
from api.web.session import WebUser, checked_form, page

router = APIRouter(include_in_schema=False)
InspectorUser = Annotated[WebUser, Depends(page("inspector"))]
MAX_RESULTS = 200
PLAYER_PAGE = 100  # clips a report player fetches at a time (app.js)
TIME_FIELDS = ("started_ms", "ended_ms")


def report_link(report_no: str) -> str:
    return f"/ui/report?no={quote(report_no, safe='')}"


def _local_ms(value: str, tz: ZoneInfo) -> int | None:
    """``<input type=datetime-local>`` value, in the lab's time zone, as UTC ms."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        return None
    return utc_ms(d.replace(tzinfo=tz) if d.tzinfo is None else d)


@router.get("/ui/search", response_class=HTMLResponse)
def search(request: Request, user: InspectorUser, records: RecordsDep, settings: SettingsDep, report_no: str = "",
           commission_no: str = "", sample_id: str = "", start: str = "", end: str = "") -> Response:
    tz = ZoneInfo(settings.timezone)
    crit = {"report_no": report_no.strip()[:64], "commission_no": commission_no.strip()[:64],
            "sample_id": sample_id.strip()[:64]}
    start_ms, end_ms = _local_ms(start, tz), _local_ms(end, tz)
    searched = any(crit.values()) or start_ms is not None or end_ms is not None
    rows = records.search(**crit, start_ms=start_ms, end_ms=end_ms, limit=MAX_RESULTS if searched else 20)
    results = [{"record_id": r.record_id, "report_no": r.report_no, "commission_no": r.commission_no,
                "project_name": r.project_name, "test_item": r.test_item, "sample_ids": json.loads(r.sample_ids),
                "operator": r.operator, "started_ms": r.started_ms, "ended_ms": r.ended_ms, "revision": r.revision,
                "link": report_link(r.report_no)} for r in rows]
    return render(request, "search.html", user=user, results=results, searched=searched,
                  form={**crit, "start": start, "end": end}, truncated=len(rows) >= MAX_RESULTS)


def _revisions(records: RecordStore, record_id: str) -> list[dict]:
    out = []
    for v in records.revisions(record_id):
        before = json.loads(v.before) if v.before else None
        after = json.loads(v.after)
        changes = [{"field": k, "before": (before or {}).get(k), "after": after.get(k), "time": k in TIME_FIELDS}
                   for k in after if before is None or before.get(k) != after.get(k)]
        out.append({"revision": v.revision, "at_ms": v.at_ms, "actor": v.actor, "created": before is None,
                    "changes": changes})
    return out


@router.get("/ui/report", response_class=HTMLResponse)
def report(request: Request, user: InspectorUser, records: RecordsDep, registry: RegistryDep, audit: AuditDep,
           exporter: ExporterDep, settings: SettingsDep, no: str = "", export: str = "") -> Response:
    if number_problem(no) is not None:
        return not_found_page(request, no)
    try:
        # paged, as the API's default: the runs come from the index, a few first clips per
        # window; the player fetches further pages as it plays or seeks (app.js).  No hold
        # marks on the listed clips: the page shows each window's count (held_per_window)
        rf = records.report_footage(no, settings.report_margin_s * 1000, holds=False,
                                    clip_page=max(1, settings.report_clip_page), clip_budget=settings.report_clip_budget)
    except NotFoundError as e:
        return not_found_page(request, str(e))
    audit.append(user.principal.actor, "report.footage", no,
                 {"cameras": sorted({w.camera_id for w in rf.windows}), "via": "ui"}, user.role)
    names = {c.id: c.name for c in registry.cameras()}
    shown = []
    for r in rf.records:
        shown.append({"record_id": r.record_id, "revision": r.revision, "commission_no": r.commission_no,
                      "project_name": r.project_name, "test_item": r.test_item,
                      "sample_ids": json.loads(r.sample_ids), "area_ids": json.loads(r.area_ids),
                      "equipment_ids": json.loads(r.equipment_ids), "operator": r.operator,
                      "started_ms": r.started_ms, "ended_ms": r.ended_ms, "revisions": _revisions(records, r.record_id)})
    cameras = []
    held = records.held_per_window(no, rf.windows)
    for w, n_held in zip(rf.windows, held, strict=True):
        lo, hi = w.start_ms, w.end_ms
        marks = []
        for r in rf.records:
            for kind, at in (("start", r.started_ms), ("end", r.ended_ms)):
                x = timeline.marker(lo, hi, at)
                if x is not None:
                    marks.append({"kind": kind, "x": x, "at_ms": at, "record_id": r.record_id})
        start, end = from_ms(lo), from_ms(hi)
        cameras.append({
            "camera_id": w.camera_id, "name": names.get(w.camera_id, ""), "start_ms": lo, "end_ms": hi,
            "coverage": w.coverage, "test_coverage": w.test_coverage,
            "bars": timeline.bars(lo, hi, [(None, a, b) for a, b in w.runs],
                                  [(p.start_ms, p.end_ms, p.reason) for p in w.parts]),
            "ticks": timeline.ticks(lo, hi),
            "marks": marks, "clips": w.clips_total, "held": n_held,
            "gaps": [{"start_ms": p.start_ms, "end_ms": p.end_ms, "reason": p.reason, "kind": timeline.kind_of(p.reason),
                      "since_ms": p.since_ms, "detail": p.detail} for p in w.parts],
            "playlist": [{"u": f"/api/v1/segments/{sid}/media", "s": a, "e": b} for sid, a, b, _ in w.clips],
            # where the player asks for more: the page after the listed clips, and (with &at=) any instant
            "next": window_clips_next(no, w, PLAYER_PAGE),
            "pages": clips_next_url(no, w, None, PLAYER_PAGE),
            "stitched_url": (f"/api/v1/cameras/{quote(w.camera_id, safe='')}/media?start={quote(start.isoformat(), safe='')}"
                             f"&end={quote(end.isoformat(), safe='')}"),
        })
    exports = exporter.exports.for_report(no)
    current = next((p for p in exports if p.id == export), None)
    return render(request, "report.html", user=user, report_no=no, records=shown, cameras=cameras,
                  margin_s=settings.report_margin_s, exports=exports, current=current)


@router.post("/ui/report/export", response_class=HTMLResponse)
async def start_export(request: Request, user: InspectorUser, exporter: ExporterDep) -> Response:
    form = await checked_form(request, user)
    no = form.get("no", "")
    try:
        pkg = exporter.start(no, user.principal.actor, user.role, new_package_id())
    except LabwitnessError as e:  # refused input or a failed start; a bug is the API's 500, not a message
        if request.headers.get("hx-request"):
            return fragment(request, "_export.html", user, pkg=None, error=problem_text(e))
        user.session.add_flash("error", problem_text(e))
        return redirect(report_link(no))
    if request.headers.get("hx-request"):
        return fragment(request, "_export.html", user, pkg=exporter.get(pkg.id), error="")
    return redirect(report_link(no) + f"&export={pkg.id}#export")


@router.get("/ui/exports/{package_id}", response_class=HTMLResponse)
def export_status(request: Request, user: InspectorUser, exporter: ExporterDep, package_id: str) -> Response:
    try:
        pkg = exporter.get(package_id)
    except NotFoundError as e:
        return fragment(request, "_export.html", user, status=404, pkg=None, error=str(e))
    return fragment(request, "_export.html", user, pkg=pkg, error="")


@router.get("/ui/exports/{package_id}/qr.png")
def export_qr(request: Request, user: InspectorUser, exporter: ExporterDep, package_id: str) -> Response:
    try:
        pkg = exporter.get(package_id)
    except NotFoundError:
        pkg = None
    if pkg is None or pkg.status != "done":
        return Response(status_code=404)
    url = json.loads(pkg.manifest)["verify_url"]  # what the QR code in the package says
    return Response(qr_png(url), media_type="image/png",
                    headers={**SECURITY_HEADERS, "Cache-Control": "private, max-age=3600"})
