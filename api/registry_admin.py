"""The registry as admins change it, from the REST API and the web UI alike: areas,
cameras, equipment and discovery scans, each change written with its revision
(index.registry) and audited; and the recorders following the enabled cameras.

Camera credentials are sealed on the way in (api.secrets): the stored URL keeps
``***`` where a password or a secret query value was, and passwords never come out.
A camera's optional sub stream (pictures for content health, never recorded) is
sealed the same way; the camera's user name and password serve both streams.
"""

from __future__ import annotations

import logging
from typing import Callable

from camera_discovery.discovery import discover
from camera_discovery.models import DiscoveredDevice
from index.audit import AuditLog
from index.models import Area, Camera, Equipment
from index.registry import Registry
from labwitness.clock import Clock, utc_ms
from labwitness.errors import IndexUnavailableError, NotFoundError, ValidationError
from labwitness.url_secrets import redact_url
from recorder.service import CameraSpec, RecorderService
from retention.camera_clock import camera_clock, osd_off

from api.camera_rows import discovered_sub_url, new_camera, seal_sub_url
from api.registry_models import AreaIn, CameraIn, CameraPatch, CameraView, EquipmentIn, ScanIn
from api.secrets import CredentialCipher, split_credentials

log = logging.getLogger(__name__)


class RegistryAdmin:
    def __init__(self, registry: Registry, audit: AuditLog, cipher: CredentialCipher, clock: Clock,
                 recorder: RecorderService | None, *, discovery_port: int, discovery_interfaces: list[str] | None,
                 follow: Callable[[], None] | None = None) -> None:
        self.registry = registry
        self.audit = audit
        self.cipher = cipher
        self.clock = clock
        self.recorder = recorder  # None: a runtime without recording follows nothing
        # on a cluster the lease manager decides which cameras this node records: a change only wakes it
        self.follow = follow
        self.discovery_port = discovery_port
        self.discovery_interfaces = discovery_interfaces
        self.discovered: dict[str, DiscoveredDevice] = {}  # endpoint -> device of the last scan

    # -- cameras and their recorders --------------------------------------------------
    def new_camera(self, camera_id: str, url: str, **kw) -> Camera:
        return new_camera(self.cipher, utc_ms(self.clock.now()), camera_id, url, **kw)

    def camera_spec(self, cam: Camera) -> CameraSpec:
        """What a recorder needs: the URL with the decrypted credentials put back."""
        return CameraSpec(cam.id, self.cipher.recording_url(cam), cam.area_id or "", self.cipher.sub_stream_url(cam))

    def sync_cameras(self) -> None:
        """Make the running recorders follow the enabled cameras in the registry."""
        if self.recorder is None:
            return
        if self.follow is not None:
            self.follow()
            return
        try:
            cams = self.registry.cameras(enabled_only=True)
        except IndexUnavailableError:
            log.warning("index unavailable; keeping the cameras that are recording now")
            return
        self.recorder.sync([self.camera_spec(c) for c in cams])

    def recording_state(self, camera_id: str) -> str | None:
        """What the camera's recorder is doing now (``CameraWorker.shown_state``); None: no recorder runs it."""
        w = self.recorder.workers().get(camera_id) if self.recorder else None
        return w.shown_state() if w else None

    def stream_clock(self, camera_id: str) -> float | None:
        """The camera's clock against the index time from its stream (``WorkerStatus``); None: unknown."""
        w = self.recorder.workers().get(camera_id) if self.recorder else None
        return w.status.stream_clock_offset_s if w else None

    def audio_status(self, camera_id: str) -> dict:
        """The camera's audio as its recorder found it (``WorkerStatus.audio_*``); empty before
        the recorder first connected or when none runs the camera."""
        w = self.recorder.workers().get(camera_id) if self.recorder else None
        if w is None or w.status.sessions == 0:
            return {}
        st = w.status
        return {"audio_codec": st.audio_codec, "audio_recorded": st.audio_recorded, "audio_note": st.audio_note}

    def view(self, c: Camera) -> CameraView:
        """The camera as admins see it: no password, and what its recorder is doing now."""
        onvif = c.clock_offset_ms / 1000 if c.clock_offset_ms is not None else None
        stream = self.stream_clock(c.id)
        return CameraView(
            id=c.id, name=c.name, rtsp_url=redact_url(c.rtsp_url), area_id=c.area_id, enabled=c.enabled,
            username=c.username, has_password=bool(c.password_enc), onvif_endpoint=c.onvif_endpoint,
            manufacturer=c.manufacturer, model=c.model, serial=c.serial,
            clock_offset_s=onvif, stream_clock_offset_s=stream, clock_warning=osd_off(camera_clock(stream, onvif)[0]),
            state=self.recording_state(c.id) or ("disabled" if not c.enabled else "idle"),
            sub_rtsp_url=redact_url(c.sub_rtsp_url) if c.sub_rtsp_url else None,
            sub_stream_state=self.sub_stream_state(c.id),
            **self.audio_status(c.id),
        )

    def sub_stream_state(self, camera_id: str) -> str | None:
        s = self.recorder.samplers().get(camera_id) if self.recorder else None
        return s.status.state if s else None

    # -- changes (the caller re-syncs the recorders after a camera change) ----------------
    def put_area(self, actor: str, body: AreaIn) -> Area:
        a = self.registry.put_area(Area(id=body.id, name=body.name, description=body.description, created_ms=0), actor)
        self.audit.append(actor, "area.put", body.id, body.model_dump(), "admin")
        return a

    def add_camera(self, actor: str, body: CameraIn) -> Camera:
        onvif: dict = {}
        url = body.rtsp_url
        if body.from_discovery:
            dev = self.discovered.get(body.from_discovery)
            if dev is None:
                raise NotFoundError(f"最近一次扫描中没有该设备 / device {body.from_discovery!r} is not in the last discovery scan")
            if not dev.profiles or not dev.profiles[0].stream_uri:
                raise ValidationError(f"设备未返回码流地址 / the device reported no stream URI ({dev.error or 'no profiles'})")
            url = url or dev.profiles[0].stream_uri
            onvif.update({"onvif_endpoint": dev.endpoint, "onvif_xaddr": (dev.xaddrs or [None])[0],
                          "manufacturer": dev.manufacturer or "", "model": dev.model or "", "serial": dev.serial or "",
                          "clock_offset_ms": round(dev.clock_offset_s * 1000) if dev.clock_offset_s is not None else None})
        if not url:
            raise ValidationError("需要 rtsp_url 或 from_discovery / give rtsp_url or from_discovery")
        sub_url = body.sub_rtsp_url or (discovered_sub_url(dev) if body.from_discovery else None)
        cam = self.new_camera(body.id, url, username=body.username, password=body.password, name=body.name,
                              area_id=body.area_id, enabled=body.enabled, sub_url=sub_url, **onvif)
        cam = self.registry.add_camera(cam, actor)
        self.audit.append(actor, "camera.add", cam.id, {"rtsp_url": redact_url(cam.rtsp_url), "area_id": cam.area_id,
                                                        "sub_rtsp_url": redact_url(cam.sub_rtsp_url)}, "admin")
        return cam

    def patch_camera(self, actor: str, camera_id: str, body: CameraPatch) -> Camera:
        changes = body.model_dump(exclude_unset=True)
        if "rtsp_url" in changes:  # checked by CameraPatch (RtspUrl)
            bare, user, pw = split_credentials(changes["rtsp_url"])
            # a "***" pasted back from the shown URL keeps the secret stored for it
            changes["rtsp_url"], changes["url_secrets_enc"] = self.cipher.seal_url(
                bare, self.registry.camera(camera_id).url_secrets_enc)
            if user is not None:
                changes.setdefault("username", user)
            if pw is not None:
                changes.setdefault("password", pw)
        if "sub_rtsp_url" in changes:  # null clears it: content health then reads the main stream
            changes["sub_rtsp_url"], changes["sub_url_secrets_enc"] = seal_sub_url(
                self.cipher, changes["sub_rtsp_url"], self.registry.camera(camera_id).sub_url_secrets_enc)
        if "password" in changes:
            changes["password_enc"] = self.cipher.encrypt(changes.pop("password"))
        cam = self.registry.update_camera(camera_id, changes, actor)
        self.audit.append(actor, "camera.update", camera_id, {"fields": sorted(changes)}, "admin")
        return cam

    def remove_camera(self, actor: str, camera_id: str) -> None:
        """Stops recording the camera; its footage stays, locked, until its retention ends."""
        self.registry.remove_camera(camera_id, actor)
        self.audit.append(actor, "camera.remove", camera_id, {}, "admin")

    def put_equipment(self, actor: str, body: EquipmentIn) -> tuple[Equipment, list[str]]:
        e, cams = self.registry.put_equipment(Equipment(id=body.id, name=body.name, area_id=body.area_id, kind=body.kind,
                                                        created_ms=0), body.camera_ids, actor)
        self.audit.append(actor, "equipment.put", body.id, body.model_dump(), "admin")
        return e, cams

    def scan(self, actor: str, role: str, body: ScanIn) -> list[DiscoveredDevice]:
        """Look for ONVIF cameras; the devices found can then be added by their endpoint."""
        devices = discover(timeout=body.timeout, hosts=body.hosts, multicast=body.multicast, username=body.username,
                           password=body.password, port=self.discovery_port, interfaces=self.discovery_interfaces)
        self.discovered = {d.endpoint: d for d in devices if d.endpoint}  # a responder with no usable answer has none
        self.audit.append(actor, "discovery.scan", "", {"found": len(devices), "hosts": body.hosts}, role)
        return devices
