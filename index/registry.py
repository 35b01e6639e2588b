"""The camera / area / equipment registry, with a Revision for every change.

Each write and its Revision commit in one transaction, so no change can exist
without its record of who made it, when, and what it was before and after.
Secrets never reach a Revision: ``password_enc``, ``url_secrets_enc`` and ``sub_url_secrets_enc`` are
shown as ``"***"``, camera URLs go through ``labwitness.url_secrets.redact_url``;
and a camera URL that still carries a secret is refused here, whoever sends it
(the caller seals it first: ``api.secrets.CredentialCipher.seal_url``).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from index.models import Area, Camera, Equipment, EquipmentCamera, Revision
from index.queries import db_guarded
from labwitness.errors import ConflictError, NotFoundError, ValidationError
from labwitness.ids import check_entity_id
from labwitness.url_secrets import redact_url

_SECRET_FIELDS = {"password_enc", "url_secrets_enc", "sub_url_secrets_enc"}
_URL_FIELDS = {"rtsp_url", "onvif_xaddr", "sub_rtsp_url"}


def snapshot(row: SQLModel | None) -> str | None:
    if row is None:
        return None
    data = row.model_dump()
    for f in _SECRET_FIELDS & data.keys():
        data[f] = "***" if data[f] else None
    for f in _URL_FIELDS & data.keys():
        data[f] = redact_url(data[f]) if data[f] else data[f]
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def _check_sealed(url: str | None) -> None:
    """A URL about to be stored must hold no secret in clear (it is shown as stored):
    one that redaction would change still has one."""
    if url and redact_url(url) != url:
        raise ValueError("internal: a camera URL must have its secrets split off and sealed before it is stored")


class Registry:
    def __init__(self, engine: Engine, now_ms: Callable[[], int]) -> None:
        self.engine = engine
        self.now_ms = now_ms

    def _revise(self, s: Session, entity: str, entity_id: str, action: str, actor: str,
                before: str | None, after: str | None) -> None:
        s.add(Revision(entity=entity, entity_id=entity_id, action=action, actor=actor[:200],
                       at_ms=self.now_ms(), before=before, after=after))

    # -- areas --------------------------------------------------------------------
    @db_guarded
    def areas(self) -> list[Area]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(Area).order_by(Area.id)))

    @db_guarded
    def area(self, area_id: str) -> Area:
        with Session(self.engine, expire_on_commit=False) as s:
            a = s.get(Area, area_id)
            if a is None:
                raise NotFoundError(f"检测区域不存在 / area {area_id!r} not found")
            return a

    @db_guarded
    def put_area(self, area: Area, actor: str) -> Area:
        """Create or update an area (idempotent: an unchanged area writes no revision)."""
        check_entity_id(area.id, "检测区域编号", "area id")
        with Session(self.engine, expire_on_commit=False) as s:
            cur = s.get(Area, area.id)
            before = snapshot(cur)
            if cur is None:
                area.created_ms = area.created_ms or self.now_ms()
                s.add(area)
                cur = area
            else:
                cur.name, cur.description = area.name, area.description
                s.add(cur)
            after = snapshot(cur)
            if after != before:
                self._revise(s, "area", area.id, "create" if before is None else "update", actor, before, after)
            s.commit()
            return cur

    # -- cameras ------------------------------------------------------------------
    @db_guarded
    def camera(self, camera_id: str) -> Camera:
        with Session(self.engine, expire_on_commit=False) as s:
            c = s.get(Camera, camera_id)
            if c is None:
                raise NotFoundError(f"摄像机不存在 / camera {camera_id!r} not found")
            return c

    @db_guarded
    def cameras(self, enabled_only: bool = False) -> list[Camera]:
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(Camera).order_by(Camera.id)
            if enabled_only:
                q = q.where(Camera.enabled == True)  # noqa: E712
            return list(s.exec(q))

    @db_guarded
    def camera_by_endpoint(self, endpoint: str) -> Camera | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.exec(select(Camera).where(Camera.onvif_endpoint == endpoint)).first()

    @db_guarded
    def add_camera(self, cam: Camera, actor: str) -> Camera:
        check_entity_id(cam.id, "摄像机编号", "camera id")
        _check_sealed(cam.rtsp_url)
        _check_sealed(cam.sub_rtsp_url)
        with Session(self.engine, expire_on_commit=False) as s:
            if s.get(Camera, cam.id) is not None:
                raise ConflictError(f"摄像机编号已存在 / camera id {cam.id!r} already exists")
            self._check_area(s, cam.area_id)
            cam.created_ms = cam.created_ms or self.now_ms()
            cam.updated_ms = cam.created_ms
            s.add(cam)
            self._revise(s, "camera", cam.id, "create", actor, None, snapshot(cam))
            try:
                s.commit()
            except sa_exc.IntegrityError as e:
                raise ConflictError(f"camera id {cam.id!r} already exists") from e
            return cam

    def upsert_camera(self, cam: Camera, actor: str) -> Camera:
        """Add, or update the given camera's connection fields (``record --url``)."""
        try:
            return self.add_camera(cam, actor)
        except ConflictError:
            return self.update_camera(cam.id, {"rtsp_url": cam.rtsp_url, "url_secrets_enc": cam.url_secrets_enc,
                                               "username": cam.username, "password_enc": cam.password_enc,
                                               "enabled": True}, actor)

    @db_guarded
    def update_camera(self, camera_id: str, changes: dict[str, Any], actor: str) -> Camera:
        allowed = {"name", "rtsp_url", "area_id", "enabled", "username", "password_enc", "url_secrets_enc",
                   "onvif_xaddr", "manufacturer", "model", "serial", "clock_offset_ms", "onvif_endpoint",
                   "sub_rtsp_url", "sub_url_secrets_enc"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        _check_sealed(changes.get("rtsp_url"))
        _check_sealed(changes.get("sub_rtsp_url"))
        with Session(self.engine, expire_on_commit=False) as s:
            cam = s.get(Camera, camera_id)
            if cam is None:
                raise NotFoundError(f"摄像机不存在 / camera {camera_id!r} not found")
            if "area_id" in changes:
                self._check_area(s, changes["area_id"])
            raw_before = cam.model_dump()
            before = snapshot(cam)
            for k, v in changes.items():
                setattr(cam, k, v)
            if cam.model_dump() != raw_before:  # compare real values: redacted ones hide a password change
                cam.updated_ms = self.now_ms()
                s.add(cam)
                after = json.loads(snapshot(cam))
                for f in _SECRET_FIELDS:
                    if raw_before[f] != getattr(cam, f) and getattr(cam, f):
                        after[f] = "*** (changed)"
                self._revise(s, "camera", camera_id, "update", actor, before, json.dumps(after, ensure_ascii=False, sort_keys=True))
                s.commit()
            return cam

    @db_guarded
    def remove_camera(self, camera_id: str, actor: str) -> None:
        """Remove from the registry: recording stops; its footage stays, locked, until retention ends."""
        with Session(self.engine, expire_on_commit=False) as s:
            cam = s.get(Camera, camera_id)
            if cam is None:
                raise NotFoundError(f"摄像机不存在 / camera {camera_id!r} not found")
            before = snapshot(cam)
            for link in s.exec(select(EquipmentCamera).where(EquipmentCamera.camera_id == camera_id)):
                s.delete(link)
            s.delete(cam)
            self._revise(s, "camera", camera_id, "delete", actor, before, None)
            s.commit()

    def _check_area(self, s: Session, area_id: str | None) -> None:
        if area_id is not None and s.get(Area, area_id) is None:
            # a reference in what was sent, not the thing addressed: bad input (422, CLI exit 2)
            raise ValidationError(f"检测区域不存在 / area {area_id!r} not found; create it first")

    # -- equipment ----------------------------------------------------------------
    @db_guarded
    def equipment(self) -> list[tuple[Equipment, list[str]]]:
        with Session(self.engine, expire_on_commit=False) as s:
            links: dict[str, list[str]] = {}
            for link in s.exec(select(EquipmentCamera).order_by(EquipmentCamera.camera_id)):
                links.setdefault(link.equipment_id, []).append(link.camera_id)
            return [(e, links.get(e.id, [])) for e in s.exec(select(Equipment).order_by(Equipment.id))]

    @db_guarded
    def put_equipment(self, eq: Equipment, camera_ids: list[str], actor: str) -> tuple[Equipment, list[str]]:
        check_entity_id(eq.id, "设备编号", "equipment id")
        with Session(self.engine, expire_on_commit=False) as s:
            self._check_area(s, eq.area_id)
            for cid in camera_ids:
                if s.get(Camera, cid) is None:
                    raise ValidationError(f"摄像机不存在 / camera {cid!r} not found")
            cur = s.get(Equipment, eq.id)
            old_links = sorted(l.camera_id for l in s.exec(select(EquipmentCamera).where(EquipmentCamera.equipment_id == eq.id)))
            before = None if cur is None else json.dumps({"equipment": json.loads(snapshot(cur)), "cameras": old_links}, ensure_ascii=False)
            if cur is None:
                eq.created_ms = eq.created_ms or self.now_ms()
                s.add(eq)
                cur = eq
            else:
                cur.name, cur.area_id, cur.kind = eq.name, eq.area_id, eq.kind
                s.add(cur)
            new_links = sorted(set(camera_ids))
            for cid in set(old_links) - set(new_links):
                s.delete(s.get(EquipmentCamera, (eq.id, cid)))
            for cid in set(new_links) - set(old_links):
                s.add(EquipmentCamera(equipment_id=eq.id, camera_id=cid))
            after = json.dumps({"equipment": json.loads(snapshot(cur)), "cameras": new_links}, ensure_ascii=False)
            if after != before:
                self._revise(s, "equipment", eq.id, "create" if before is None else "update", actor, before, after)
            s.commit()
            return cur, new_links

    # -- history ------------------------------------------------------------------
    @db_guarded
    def revisions(self, entity: str | None = None, entity_id: str | None = None, limit: int = 200) -> list[Revision]:
        with Session(self.engine, expire_on_commit=False) as s:
            q = select(Revision)
            if entity:
                q = q.where(Revision.entity == entity)
            if entity_id:
                q = q.where(Revision.entity_id == entity_id)
            return list(s.exec(q.order_by(col(Revision.id).desc()).limit(limit)))
