"""REST for the registry: areas, cameras, equipment, discovery scans, revisions.

Every change goes through :class:`api.registry_admin.RegistryAdmin` (written with a
Revision, audited, as the web UI's forms do too) and the recorders are re-synced
right after, so adding, disabling or changing a camera takes effect without a
restart.  Camera passwords go in, never come out.  A camera's own clock is read
and set over ONVIF by admins (``/cameras/{id}/time``: :mod:`api.camera_time`).
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from pydantic import BaseModel

from api.auth import Admin, Reader
from api.deps import CameraClocksDep, RegistryAdminDep, RegistryDep
from api.registry_models import (AreaIn, CameraIn, CameraPatch, CameraTimeView, CameraView, EquipmentIn, EquipmentView, NtpIn,
                                 ScanIn)


def _actor(request: Request, who: Admin) -> str:
    """Admins change the registry; the change is audited under their token's name."""
    host = request.client.host if request.client else "?"
    return f"{who.actor}@{host}"


ActorDep = Annotated[str, Depends(_actor)]


class RevisionView(BaseModel):
    id: int
    entity: str
    entity_id: str
    action: str
    actor: str
    at_ms: int
    before: dict | None
    after: dict | None


router = APIRouter(prefix="/api/v1")


@router.get("/areas")
def list_areas(registry: RegistryDep, who: Reader) -> list[AreaIn]:
    return [AreaIn(id=a.id, name=a.name, description=a.description) for a in registry.areas()]


@router.post("/areas", status_code=201)
def put_area(admin: RegistryAdminDep, actor: ActorDep, body: AreaIn) -> AreaIn:
    a = admin.put_area(actor, body)
    return AreaIn(id=a.id, name=a.name, description=a.description)


@router.get("/cameras")
def list_cameras(admin: RegistryAdminDep, registry: RegistryDep, who: Reader) -> list[CameraView]:
    return [admin.view(c) for c in registry.cameras()]


@router.get("/cameras/{camera_id}")
def get_camera(admin: RegistryAdminDep, registry: RegistryDep, who: Reader, camera_id: str) -> CameraView:
    return admin.view(registry.camera(camera_id))


@router.post("/cameras", status_code=201)
def add_camera(admin: RegistryAdminDep, actor: ActorDep, body: CameraIn, tasks: BackgroundTasks) -> CameraView:
    cam = admin.add_camera(actor, body)
    tasks.add_task(admin.sync_cameras)
    return admin.view(cam)


@router.patch("/cameras/{camera_id}")
def patch_camera(admin: RegistryAdminDep, actor: ActorDep, camera_id: str, body: CameraPatch,
                 tasks: BackgroundTasks) -> CameraView:
    cam = admin.patch_camera(actor, camera_id, body)
    tasks.add_task(admin.sync_cameras)
    return admin.view(cam)


@router.delete("/cameras/{camera_id}", status_code=204)
def remove_camera(admin: RegistryAdminDep, actor: ActorDep, camera_id: str, tasks: BackgroundTasks) -> Response:
    """Stops recording the camera; its footage stays, locked, until its retention ends."""
    admin.remove_camera(actor, camera_id)
    tasks.add_task(admin.sync_cameras)
    return Response(status_code=204)


@router.get("/cameras/{camera_id}/time")
def camera_time(clocks: CameraClocksDep, who: Admin, camera_id: str) -> CameraTimeView:
    """The camera's clock (offset to this server) and NTP settings, read live over ONVIF with its stored
    credentials (admins only: it contacts the camera with them). 502 when the camera does not answer usefully."""
    return CameraTimeView(**clocks.show(who.actor, camera_id))


@router.post("/cameras/{camera_id}/time/ntp")
def camera_set_ntp(clocks: CameraClocksDep, who: Admin, actor: ActorDep, camera_id: str, body: NtpIn) -> CameraTimeView:
    """Point the camera at an NTP server and switch it to NTP time (ONVIF SetNTP, SetSystemDateAndTime); audited."""
    return CameraTimeView(**clocks.set_ntp(actor, who.role, camera_id, body.server))


@router.post("/cameras/{camera_id}/time/sync")
def camera_sync_time(clocks: CameraClocksDep, who: Admin, actor: ActorDep, camera_id: str) -> CameraTimeView:
    """Set the camera's clock to this server's UTC time (ONVIF SetSystemDateAndTime, manual); audited."""
    return CameraTimeView(**clocks.sync(actor, who.role, camera_id))


@router.get("/equipment")
def list_equipment(registry: RegistryDep, who: Reader) -> list[EquipmentView]:
    return [EquipmentView(id=e.id, name=e.name, area_id=e.area_id, kind=e.kind, camera_ids=cams)
            for e, cams in registry.equipment()]


@router.post("/equipment", status_code=201)
def put_equipment(admin: RegistryAdminDep, actor: ActorDep, body: EquipmentIn) -> EquipmentView:
    e, cams = admin.put_equipment(actor, body)
    return EquipmentView(id=e.id, name=e.name, area_id=e.area_id, kind=e.kind, camera_ids=cams)


@router.post("/discovery/scan")
def scan(admin: RegistryAdminDep, who: Admin, body: ScanIn) -> list[dict]:
    return [d.to_json() for d in admin.scan(who.actor, who.role, body)]


@router.get("/revisions")
def revisions(registry: RegistryDep, who: Admin, entity: str | None = None, entity_id: str | None = None) -> list[RevisionView]:
    return [RevisionView(id=r.id, entity=r.entity, entity_id=r.entity_id, action=r.action, actor=r.actor, at_ms=r.at_ms,
                         before=json.loads(r.before) if r.before else None, after=json.loads(r.after) if r.after else None)
            for r in registry.revisions(entity, entity_id)]
