"""REST for the registry: areas, cameras, equipment, discovery scans, revisions.

Every change is written with a Revision (index.registry) and the recorders are
re-synced right after, so adding, disabling or changing a camera takes effect
without a restart.  Camera passwords go in, never come out.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from pydantic import AfterValidator, BaseModel, Field, field_validator

from index.models import Area, Camera, Equipment
from labwitness.errors import NotFoundError, ValidationError
from labwitness.ids import EntityId
from labwitness.url_secrets import redact_url
from recorder.rtsp_url import MAX_URL_CHARS, check_rtsp_url

from api.auth import Admin, Reader
from api.patch_body import PatchBody
from api.deps import RuntimeDep
from api.runtime import Runtime


def _actor(request: Request, who: Admin) -> str:
    """Admins change the registry; the change is audited under their token's name."""
    host = request.client.host if request.client else "?"
    return f"{who.actor}@{host}"


ActorDep = Annotated[str, Depends(_actor)]


class AreaIn(BaseModel):
    id: EntityId = Field(examples=["lixue"])
    name: str = Field(min_length=1, max_length=200, examples=["力学室"])
    description: str = Field(default="", max_length=2000)


#: a camera URL, checked by the one rule of recorder.rtsp_url (the same check runs on every path in)
RtspUrl = Annotated[str, Field(max_length=MAX_URL_CHARS), AfterValidator(check_rtsp_url)]


class CameraIn(BaseModel):
    id: EntityId
    name: str = Field(default="", max_length=200)
    rtsp_url: RtspUrl | None = Field(default=None, description="rtsp://host:554/path (credentials may be given here or below)")
    from_discovery: str | None = Field(default=None, max_length=200, description="endpoint reference from the last discovery scan")
    area_id: EntityId | None = None
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)
    enabled: bool = True


class CameraPatch(PatchBody):
    table = Camera

    name: str | None = Field(default=None, max_length=200)
    rtsp_url: RtspUrl | None = None
    area_id: EntityId | None = None
    enabled: bool | None = None
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)


class CameraView(BaseModel):
    id: str
    name: str
    rtsp_url: str
    area_id: str | None
    enabled: bool
    username: str | None
    has_password: bool
    onvif_endpoint: str | None
    manufacturer: str
    model: str
    serial: str
    clock_offset_s: float | None
    state: str


class EquipmentIn(BaseModel):
    id: EntityId = Field(examples=["UTM-2019-003"])
    name: str = Field(min_length=1, max_length=200, examples=["微机控制电液伺服万能试验机"])
    area_id: EntityId | None = None
    kind: str = Field(default="", max_length=200)
    camera_ids: list[EntityId] = Field(default_factory=list, max_length=64)


class EquipmentView(EquipmentIn):
    pass


class ScanIn(BaseModel):
    timeout: float = Field(default=3.0, gt=0, le=30)
    hosts: list[str] = Field(default_factory=list, max_length=256)
    multicast: bool = True
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for h in v:
            if not h or len(h) > 255 or any(c.isspace() for c in h):
                raise ValueError(f"invalid host {h!r}")
        return v


class RevisionView(BaseModel):
    id: int
    entity: str
    entity_id: str
    action: str
    actor: str
    at_ms: int
    before: dict | None
    after: dict | None


def camera_view(rt: Runtime, c: Camera) -> CameraView:
    w = rt.recorder.workers().get(c.id) if rt.recorder else None
    state = w.status.state if w else ("disabled" if not c.enabled else "idle")
    return CameraView(
        id=c.id, name=c.name, rtsp_url=redact_url(c.rtsp_url), area_id=c.area_id, enabled=c.enabled, username=c.username,
        has_password=bool(c.password_enc), onvif_endpoint=c.onvif_endpoint, manufacturer=c.manufacturer,
        model=c.model, serial=c.serial, clock_offset_s=c.clock_offset_ms / 1000 if c.clock_offset_ms is not None else None,
        state="stalled" if w and w.stalled() else state,
    )


router = APIRouter(prefix="/api/v1")


@router.get("/areas")
def list_areas(rt: RuntimeDep, who: Reader) -> list[AreaIn]:
    return [AreaIn(id=a.id, name=a.name, description=a.description) for a in rt.registry.areas()]


@router.post("/areas", status_code=201)
def put_area(rt: RuntimeDep, actor: ActorDep, body: AreaIn) -> AreaIn:
    a = rt.registry.put_area(Area(id=body.id, name=body.name, description=body.description, created_ms=0), actor)
    rt.audit.append(actor, "area.put", body.id, body.model_dump(), "admin")
    return AreaIn(id=a.id, name=a.name, description=a.description)


@router.get("/cameras")
def list_cameras(rt: RuntimeDep, who: Reader) -> list[CameraView]:
    return [camera_view(rt, c) for c in rt.registry.cameras()]


@router.get("/cameras/{camera_id}")
def get_camera(rt: RuntimeDep, who: Reader, camera_id: str) -> CameraView:
    return camera_view(rt, rt.registry.camera(camera_id))


@router.post("/cameras", status_code=201)
def add_camera(rt: RuntimeDep, actor: ActorDep, body: CameraIn, tasks: BackgroundTasks) -> CameraView:
    onvif: dict = {}
    url = body.rtsp_url
    if body.from_discovery:
        dev = rt.discovered.get(body.from_discovery)
        if dev is None:
            raise NotFoundError(f"最近一次扫描中没有该设备 / device {body.from_discovery!r} is not in the last discovery scan")
        if not dev.profiles or not dev.profiles[0].stream_uri:
            raise ValidationError(f"设备未返回码流地址 / the device reported no stream URI ({dev.error or 'no profiles'})")
        url = url or dev.profiles[0].stream_uri
        onvif = {"onvif_endpoint": dev.endpoint, "onvif_xaddr": (dev.xaddrs or [None])[0],
                 "manufacturer": dev.manufacturer or "", "model": dev.model or "", "serial": dev.serial or "",
                 "clock_offset_ms": round(dev.clock_offset_s * 1000) if dev.clock_offset_s is not None else None}
    if not url:
        raise ValidationError("需要 rtsp_url 或 from_discovery / give rtsp_url or from_discovery")
    cam = rt.new_camera(body.id, url, username=body.username, password=body.password, name=body.name,
                        area_id=body.area_id, enabled=body.enabled, **onvif)
    cam = rt.registry.add_camera(cam, actor)
    rt.audit.append(actor, "camera.add", cam.id, {"rtsp_url": redact_url(cam.rtsp_url), "area_id": cam.area_id}, "admin")
    tasks.add_task(rt.sync_cameras)
    return camera_view(rt, cam)


@router.patch("/cameras/{camera_id}")
def patch_camera(rt: RuntimeDep, actor: ActorDep, camera_id: str, body: CameraPatch, tasks: BackgroundTasks) -> CameraView:
    from api.secrets import split_credentials

    changes = body.model_dump(exclude_unset=True)
    if "rtsp_url" in changes:  # checked by CameraPatch (RtspUrl)
        bare, user, pw = split_credentials(changes["rtsp_url"])
        # a "***" pasted back from the shown URL keeps the secret stored for it
        changes["rtsp_url"], changes["url_secrets_enc"] = rt.cipher.seal_url(
            bare, rt.registry.camera(camera_id).url_secrets_enc)
        if user is not None:
            changes.setdefault("username", user)
        if pw is not None:
            changes.setdefault("password", pw)
    if "password" in changes:
        changes["password_enc"] = rt.cipher.encrypt(changes.pop("password"))
    cam = rt.registry.update_camera(camera_id, changes, actor)
    rt.audit.append(actor, "camera.update", camera_id, {"fields": sorted(changes)}, "admin")
    tasks.add_task(rt.sync_cameras)
    return camera_view(rt, cam)


@router.delete("/cameras/{camera_id}", status_code=204)
def remove_camera(rt: RuntimeDep, actor: ActorDep, camera_id: str, tasks: BackgroundTasks) -> Response:
    """Stops recording the camera; its footage stays, locked, until its retention ends."""
    rt.registry.remove_camera(camera_id, actor)
    rt.audit.append(actor, "camera.remove", camera_id, {}, "admin")
    tasks.add_task(rt.sync_cameras)
    return Response(status_code=204)


@router.get("/equipment")
def list_equipment(rt: RuntimeDep, who: Reader) -> list[EquipmentView]:
    return [EquipmentView(id=e.id, name=e.name, area_id=e.area_id, kind=e.kind, camera_ids=cams)
            for e, cams in rt.registry.equipment()]


@router.post("/equipment", status_code=201)
def put_equipment(rt: RuntimeDep, actor: ActorDep, body: EquipmentIn) -> EquipmentView:
    e, cams = rt.registry.put_equipment(Equipment(id=body.id, name=body.name, area_id=body.area_id, kind=body.kind,
                                                  created_ms=0), body.camera_ids, actor)
    rt.audit.append(actor, "equipment.put", body.id, body.model_dump(), "admin")
    return EquipmentView(id=e.id, name=e.name, area_id=e.area_id, kind=e.kind, camera_ids=cams)


@router.post("/discovery/scan")
def scan(rt: RuntimeDep, who: Admin, body: ScanIn) -> list[dict]:
    from camera_discovery.discovery import discover

    devices = discover(timeout=body.timeout, hosts=body.hosts, multicast=body.multicast, username=body.username,
                       password=body.password, port=rt.settings.discovery_port, interfaces=rt.settings.discovery_ifaces)
    rt.discovered = {d.endpoint: d for d in devices if d.endpoint}  # a responder with no usable answer has none
    rt.audit.append(who.actor, "discovery.scan", "", {"found": len(devices), "hosts": body.hosts}, who.role)
    return [d.to_json() for d in devices]


@router.get("/revisions")
def revisions(rt: RuntimeDep, who: Admin, entity: str | None = None, entity_id: str | None = None) -> list[RevisionView]:
    return [RevisionView(id=r.id, entity=r.entity, entity_id=r.entity_id, action=r.action, actor=r.actor, at_ms=r.at_ms,
                         before=json.loads(r.before) if r.before else None, after=json.loads(r.after) if r.after else None)
            for r in rt.registry.revisions(entity, entity_id)]
