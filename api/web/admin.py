"""Admin pages: cameras (live status, thumbnails, clock: NTP server or sync over
ONVIF through :class:`api.camera_time.CameraClocks`), discovery scans, areas,
equipment, and the audit log.  Every change goes through the REST API's own
models and service (``api.registry_models``, ``api.registry_admin``), so
validation, revisions and audit events are exactly the API's."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask

from index.registry import Registry
from labwitness.clock import utc_ms
from labwitness.errors import LabwitnessError, ValidationError as InvalidInput
from labwitness.url_secrets import redact_text, redact_url
from retention.camera_clock import OSD_BOUND_S, camera_clock
from retention.health import is_offline

from api.deps import AuditDep, CameraClocksDep, ClockDep, IndexDep, RegistryAdminDep, RegistryDep, SettingsDep
from api.registry_admin import RegistryAdmin
from api.registry_models import AreaIn, CameraIn, CameraPatch, EquipmentIn, ScanIn
from api.web.pages import problem_text, redirect
from api.web.render import fragment, render
from api.web.session import WebUser, checked_form, page

router = APIRouter(include_in_schema=False)
AdminUser = Annotated[WebUser, Depends(page())]
ReaderUser = Annotated[WebUser, Depends(page("inspector", "operations"))]


def flash(user: WebUser, level: str, message: str) -> None:
    user.session.add_flash(level, message)


def attempt(user: WebUser, ok_message: str, fn) -> bool:
    """Run a change; refused input (pydantic's or labwitness's ValidationError) is shown as a
    message. Any other error is a bug and is not dressed up as one: it becomes the API's 500."""
    try:
        fn()
    except (ValidationError, LabwitnessError) as e:
        flash(user, "error", problem_text(e))
        return False
    flash(user, "ok", ok_message)
    return True


def opt(v: str | None) -> str | None:
    v = (v or "").strip()
    return v or None


# -- cameras -----------------------------------------------------------------------
def camera_rows(registry: RegistryDep, admin: RegistryAdminDep, index: IndexDep, clock: ClockDep,
                settings: SettingsDep) -> list[dict]:
    """Each camera with live status: recording/offline, last segment age, clock offset."""
    now_ms = utc_ms(clock.now())
    thumbs = index.cameras_with_thumbnail()
    area_names = {a.id: a.name for a in registry.areas()}
    rows = []
    for c in registry.cameras():
        v = admin.view(c)
        last = index.latest_segment(c.id)
        age = round((now_ms - last.end_ms) / 1000, 1) if last else None
        if not c.enabled:
            status = "disabled"
        elif v.state == "recording" and not is_offline(last.end_ms if last else None, now_ms, settings.segment_seconds,
                                                      settings.rtsp_read_timeout_s):
            status = "recording"
        else:
            status = "offline"
        # the offset the burned-in OSD time shows against the index time (stream's reports, else ONVIF)
        osd_offset, osd_source = camera_clock(v.stream_clock_offset_s, v.clock_offset_s)
        rows.append({"id": c.id, "name": c.name, "area_id": c.area_id, "area_name": area_names.get(c.area_id or "", ""),
                     "enabled": c.enabled, "state": v.state,
                     "status": status, "age_s": age, "clock_offset_s": osd_offset, "clock_source": osd_source,
                     "clock_warning": v.clock_warning, "clock_bound_s": OSD_BOUND_S,
                     "has_onvif": bool(c.onvif_xaddr), "has_thumb": c.id in thumbs,
                     "manufacturer": c.manufacturer, "model": c.model, "serial": c.serial, "username": c.username,
                     "has_password": v.has_password, "rtsp_url": redact_url(c.rtsp_url),
                     "audio_codec": v.audio_codec, "audio_recorded": v.audio_recorded, "audio_note": v.audio_note})
    return rows


#: after the signed-in user (dependencies run in order: no rows are read for a refused request)
CameraRows = Annotated[list[dict], Depends(camera_rows)]


@router.get("/ui/cameras", response_class=HTMLResponse)
def cameras(request: Request, user: ReaderUser, rows: CameraRows, registry: RegistryDep) -> Response:
    return render(request, "cameras.html", user=user, cameras=rows, areas=registry.areas())


@router.get("/ui/cameras/rows", response_class=HTMLResponse)
def camera_rows_fragment(request: Request, user: ReaderUser, rows: CameraRows, registry: RegistryDep) -> Response:
    return fragment(request, "_camera_rows.html", user, cameras=rows, areas=registry.areas())


def cameras_changed(admin: RegistryAdmin, ok: bool) -> Response:
    """Back to the cameras page; a camera that was changed (``ok``) is followed by the
    recorders after the response, as the REST API's background task does."""
    resp = redirect("/ui/cameras")
    if ok:
        resp.background = BackgroundTask(admin.sync_cameras)
    return resp


@router.post("/ui/cameras/add")
async def add_camera(request: Request, user: AdminUser, admin: RegistryAdminDep) -> Response:
    form = await checked_form(request, user)
    ok = attempt(user, "camera.added", lambda: admin.add_camera(user.actor, CameraIn(
        id=form.get("id", "").strip(), name=form.get("name", "").strip(), rtsp_url=opt(form.get("rtsp_url")),
        area_id=opt(form.get("area_id")), username=opt(form.get("username")), password=opt(form.get("password")))))
    return cameras_changed(admin, ok)


@router.post("/ui/cameras/{camera_id}/update")
async def update_camera(request: Request, user: AdminUser, admin: RegistryAdminDep, camera_id: str) -> Response:
    form = await checked_form(request, user)
    ok = attempt(user, "camera.updated", lambda: admin.patch_camera(user.actor, camera_id, CameraPatch(
        name=form.get("name", "").strip(), area_id=opt(form.get("area_id")), enabled=form.get("enabled") == "on")))
    return cameras_changed(admin, ok)


@router.post("/ui/cameras/{camera_id}/remove")
async def remove_camera(request: Request, user: AdminUser, admin: RegistryAdminDep, camera_id: str) -> Response:
    await checked_form(request, user)
    ok = attempt(user, "camera.removed", lambda: admin.remove_camera(user.actor, camera_id))
    return cameras_changed(admin, ok)


@router.post("/ui/cameras/{camera_id}/time/ntp")
async def camera_set_ntp(request: Request, user: AdminUser, clocks: CameraClocksDep, camera_id: str) -> Response:
    form = await checked_form(request, user)
    attempt(user, "camera.time_ntp", lambda: clocks.set_ntp(user.actor, user.role, camera_id, form.get("server", "")))
    return redirect("/ui/cameras")


@router.post("/ui/cameras/{camera_id}/time/sync")
async def camera_sync_time(request: Request, user: AdminUser, clocks: CameraClocksDep, camera_id: str) -> Response:
    await checked_form(request, user)
    attempt(user, "camera.time_synced", lambda: clocks.sync(user.actor, user.role, camera_id))
    return redirect("/ui/cameras")


# -- discovery -----------------------------------------------------------------------
@dataclass
class ScanJob:
    """The UI's one background scan (a scan is cheap; one at a time is plenty)."""

    state: str = "idle"  # idle | running | done | failed
    started: float = 0.0
    expected_s: float = 0.0
    finished_at_ms: int | None = None
    devices: list[dict] = field(default_factory=list)
    error: str = ""
    by: str = ""
    username: str | None = None  # ONVIF credentials of the scan, reused when adding a device;
    password: str | None = None  # kept in server memory only, never rendered

    def progress(self) -> float:
        if self.state != "running":
            return 1.0
        return min(0.95, (time.monotonic() - self.started) / max(self.expected_s, 0.1))


def scan_job(request: Request) -> ScanJob:
    return request.app.state.web_scan


def device_rows(registry: Registry, job: ScanJob) -> list[dict]:
    out = []
    for d in job.devices:
        known = registry.camera_by_endpoint(d["endpoint"]) if d.get("endpoint") else None
        profile = (d.get("profiles") or [{}])[0]
        uri = profile.get("stream_uri")
        scopes = d.get("scopes") or {}
        suggested = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in (d.get("serial") or scopes.get("name") or "cam").lower())
        out.append({**d, "name": scopes.get("name") or "", "location": scopes.get("location") or "",
                    "stream_uri": redact_url(uri) if uri else None, "width": profile.get("width"),
                    "height": profile.get("height"), "encoding": profile.get("encoding"),
                    "registered_as": known.id if known else None, "suggested_id": suggested.strip("-.")[:64] or "cam"})
    return out


def _discovery_ctx(request: Request, registry: Registry) -> dict:
    job = scan_job(request)
    return {"job": job, "devices": device_rows(registry, job), "areas": registry.areas(),
            "equipment": [e for e, _ in registry.equipment()]}


@router.get("/ui/discovery", response_class=HTMLResponse)
def discovery(request: Request, user: AdminUser, registry: RegistryDep, settings: SettingsDep) -> Response:
    return render(request, "discovery.html", user=user, **_discovery_ctx(request, registry),
                  discovery_port=settings.discovery_port)


@router.get("/ui/discovery/status", response_class=HTMLResponse)
def discovery_status(request: Request, user: AdminUser, registry: RegistryDep) -> Response:
    return fragment(request, "_scan.html", user, **_discovery_ctx(request, registry))


@router.post("/ui/discovery/scan", response_class=HTMLResponse)
async def start_scan(request: Request, user: AdminUser, admin: RegistryAdminDep, registry: RegistryDep,
                     clock: ClockDep) -> Response:
    form = await checked_form(request, user)
    job = scan_job(request)
    hosts = [h for h in form.get("hosts", "").replace(",", " ").split() if h]
    try:
        body = ScanIn(timeout=float(form.get("timeout") or 3), hosts=hosts, multicast=form.get("multicast", "on") == "on",
                          username=opt(form.get("username")), password=opt(form.get("password")))
    except (ValidationError, ValueError) as e:
        if job.state != "running":
            job.state, job.error, job.devices = "failed", problem_text(e), []
        if not request.headers.get("hx-request"):
            return redirect("/ui/discovery")
        return fragment(request, "_scan.html", user, **_discovery_ctx(request, registry))
    with request.app.state.web_scan_lock:
        if job.state != "running":
            job.state, job.started, job.devices, job.error, job.by = "running", time.monotonic(), [], "", user.actor
            job.expected_s = body.timeout + 2.0  # probe wait, then the ONVIF queries
            job.username, job.password = body.username, body.password

            def run() -> None:
                try:
                    job.devices = [d.to_json() for d in admin.scan(user.principal.actor, user.role, body)]
                    job.state = "done"
                except Exception as e:  # the page shows why the scan could not run
                    job.error, job.state = problem_text(e), "failed"
                job.finished_at_ms = utc_ms(clock.now())

            threading.Thread(target=run, name="ui-discovery-scan", daemon=True).start()
    if not request.headers.get("hx-request"):  # without JavaScript: the page itself shows the scan's progress
        return redirect("/ui/discovery")
    return fragment(request, "_scan.html", user, **_discovery_ctx(request, registry))


@router.post("/ui/discovery/add")
async def add_discovered(request: Request, user: AdminUser, admin: RegistryAdminDep, registry: RegistryDep) -> Response:
    form = await checked_form(request, user)
    job = scan_job(request)
    tasks = BackgroundTasks()

    def go() -> None:
        body = CameraIn(id=form.get("id", "").strip(), name=form.get("name", "").strip(),
                        from_discovery=opt(form.get("endpoint")), area_id=opt(form.get("area_id")),
                        username=opt(form.get("username")) or job.username,
                        password=opt(form.get("password")) or job.password)
        cam = admin.add_camera(user.actor, body)
        tasks.add_task(admin.sync_cameras)
        eq_id = opt(form.get("equipment_id"))
        if eq_id:
            eq = next(((e, cams) for e, cams in registry.equipment() if e.id == eq_id), None)
            if eq is None:
                raise InvalidInput(f"检测设备不存在 / equipment {eq_id!r} not found")
            e, cams = eq
            admin.put_equipment(user.actor, EquipmentIn(id=e.id, name=e.name, area_id=e.area_id, kind=e.kind,
                                                        camera_ids=sorted({*cams, cam.id})))

    ok = attempt(user, "camera.added", go)
    resp = redirect("/ui/cameras" if ok else "/ui/discovery")
    resp.background = tasks
    return resp


# -- areas and equipment ---------------------------------------------------------------
@router.get("/ui/areas", response_class=HTMLResponse)
def areas(request: Request, user: AdminUser, registry: RegistryDep) -> Response:
    cams = registry.cameras()
    rows = [{"id": a.id, "name": a.name, "description": a.description,
             "cameras": [c.id for c in cams if c.area_id == a.id]} for a in registry.areas()]
    return render(request, "areas.html", user=user, areas=rows)


@router.post("/ui/areas")
async def put_area(request: Request, user: AdminUser, admin: RegistryAdminDep) -> Response:
    form = await checked_form(request, user)
    attempt(user, "area.saved", lambda: admin.put_area(user.actor, AreaIn(
        id=form.get("id", "").strip(), name=form.get("name", "").strip(), description=form.get("description", "").strip())))
    return redirect("/ui/areas")


@router.get("/ui/equipment", response_class=HTMLResponse)
def equipment(request: Request, user: AdminUser, registry: RegistryDep) -> Response:
    rows = [{"id": e.id, "name": e.name, "area_id": e.area_id, "kind": e.kind, "cameras": cams}
            for e, cams in registry.equipment()]
    return render(request, "equipment.html", user=user, equipment=rows, areas=registry.areas(),
                  cameras=registry.cameras())


@router.post("/ui/equipment")
async def put_equipment(request: Request, user: AdminUser, admin: RegistryAdminDep) -> Response:
    form = await checked_form(request, user)
    attempt(user, "equipment.saved", lambda: admin.put_equipment(user.actor, EquipmentIn(
        id=form.get("id", "").strip(), name=form.get("name", "").strip(), area_id=opt(form.get("area_id")),
        kind=form.get("kind", "").strip(), camera_ids=form.getlist("camera_ids"))))
    return redirect("/ui/equipment")


# -- audit log ---------------------------------------------------------------------------
@router.get("/ui/audit", response_class=HTMLResponse)
def audit(request: Request, user: AdminUser, log: AuditDep, before_id: int | None = None) -> Response:
    if before_id is not None and not 1 <= before_id <= 2**62:
        before_id = None
    events = log.events(100, before_id)
    chain = log.verify()
    rows = [{"id": e.id, "at_ms": e.at_ms, "actor": e.actor, "role": e.role, "action": e.action, "target": e.target,
             "detail": json.dumps(json.loads(redact_text(e.detail) or "{}"), ensure_ascii=False, sort_keys=True)[:400],
             "hash": e.hash} for e in events]
    return render(request, "audit.html", user=user, events=rows, chain=chain,
                  older=rows[-1]["id"] if len(rows) == 100 else None)
