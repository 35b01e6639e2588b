"""What admins send and read about the registry: areas, cameras, equipment and
discovery scans, as the REST routes and the web UI's forms both validate them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator

from index.models import Camera
from labwitness.ids import EntityId
from recorder.rtsp_url import MAX_URL_CHARS, check_rtsp_url

from api.patch_body import PatchBody


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
    #: the camera's audio as its recorder last found it (FFmpeg's codec name, "" none); None
    #: before the recorder first connected, or when no recorder runs the camera
    audio_codec: str | None = None
    #: what the segments carry of it: "aac" (copied, or G.711 transcoded), "" not recorded
    audio_recorded: str | None = None
    #: why the camera's audio is not recorded (中文 / English); "" when it is, or there is none
    audio_note: str = ""


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
