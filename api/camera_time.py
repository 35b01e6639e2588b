"""A registered camera's clock, as lab admins read and fix it: REST, web UI and CLI alike.

Owns :class:`CameraClocks`: the camera's ONVIF address and its credentials
(decrypted here, never returned nor logged) go to :mod:`camera_discovery.onvif_time`;
every change (set NTP server, sync to this server's time) is audited whether it
worked or not, and the offset measured after it is stored with the camera
(a revision) so health and the camera list show the fixed clock at once.
"""

from __future__ import annotations

import logging
from typing import Any

from camera_discovery import onvif_time
from index.audit import AuditLog
from index.models import Camera
from index.registry import Registry
from labwitness.clock import Clock
from labwitness.errors import DeviceError, ValidationError

from api.secrets import CredentialCipher

log = logging.getLogger(__name__)

#: each ONVIF request's bound (the whole change takes a handful of them, and up to a second of waiting)
TIMEOUT_S = 5.0
#: a stored offset is replaced when a new reading differs by more than its own uncertainty
_STORE_WHEN_OFF_BY_MS = 500


class CameraClocks:
    def __init__(self, registry: Registry, audit: AuditLog, cipher: CredentialCipher, clock: Clock, *,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.registry = registry
        self.audit = audit
        self.cipher = cipher
        self.clock = clock
        self.timeout_s = timeout_s

    def show(self, actor: str, camera_id: str) -> dict[str, Any]:
        """The camera's clock and NTP settings, read live (the stored offset follows the reading)."""
        cam = self._camera(camera_id)
        got = onvif_time.read_time_settings(cam.onvif_xaddr or "", *self._credentials(cam), self.timeout_s,
                                            clock=self.clock)
        self._store_offset(actor, cam, got)
        return {"camera_id": cam.id, **got.to_json()}

    def set_ntp(self, actor: str, role: str, camera_id: str, server: str) -> dict[str, Any]:
        """Point the camera at the NTP server ``server`` and switch it to NTP time."""
        target = onvif_time.ntp_server(server)  # refused before the camera is contacted
        cam = self._camera(camera_id)
        return self._change(actor, role, cam, "camera.time.ntp", {"server": target.address},
                            lambda user, pw: onvif_time.set_ntp(cam.onvif_xaddr or "", target.address, user, pw,
                                                                self.timeout_s, clock=self.clock))

    def sync(self, actor: str, role: str, camera_id: str) -> dict[str, Any]:
        """Set the camera's clock (manual time) to this server's UTC now."""
        cam = self._camera(camera_id)
        return self._change(actor, role, cam, "camera.time.sync", {},
                            lambda user, pw: onvif_time.sync_time(cam.onvif_xaddr or "", user, pw, self.timeout_s,
                                                                  clock=self.clock))

    # -- inside ------------------------------------------------------------------------
    def _camera(self, camera_id: str) -> Camera:
        cam = self.registry.camera(camera_id)
        if not cam.onvif_xaddr:
            raise ValidationError(f"摄像机 {camera_id} 没有 ONVIF 地址，无法读取或设置其时钟（请通过“发现摄像机”添加）/ "
                                  f"camera {camera_id} has no ONVIF address: its clock cannot be read or set "
                                  "(add it from a discovery scan)")
        return cam

    def _credentials(self, cam: Camera) -> tuple[str | None, str | None]:
        return cam.username, self.cipher.decrypt(cam.password_enc)

    def _change(self, actor: str, role: str, cam: Camera, action: str, detail: dict, call) -> dict[str, Any]:
        before = cam.clock_offset_ms
        try:
            got = call(*self._credentials(cam))
        except DeviceError as e:
            # an attempt to change a camera's clock is evidence too, even when the camera refused it
            self.audit.append(actor, action, cam.id, {**detail, "ok": False, "error": type(e).__name__}, role)
            log.warning("camera %s: %s failed: %s", cam.id, action, e)
            raise
        self.audit.append(actor, action, cam.id, {
            **detail, "ok": True, "offset_before_ms": before,
            "offset_after_ms": round(got.clock_offset_s * 1000) if got.clock_offset_s is not None else None}, role)
        log.info("camera %s: %s by %s; clock offset now %s s", cam.id, action, actor, got.clock_offset_s)
        self._store_offset(actor, cam, got)
        return {"camera_id": cam.id, **got.to_json()}

    def _store_offset(self, actor: str, cam: Camera, got: onvif_time.TimeSettings) -> None:
        if got.clock_offset_s is None:
            return
        new = round(got.clock_offset_s * 1000)
        if cam.clock_offset_ms is None or abs(new - cam.clock_offset_ms) > _STORE_WHEN_OFF_BY_MS:
            self.registry.update_camera(cam.id, {"clock_offset_ms": new}, actor)
