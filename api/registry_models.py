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
    sub_rtsp_url: RtspUrl | None = Field(default=None, description="sub stream (pictures for content health only; "
                                         "from_discovery picks the smallest other profile); the camera's credentials serve it")


class CameraPatch(PatchBody):
    table = Camera

    name: str | None = Field(default=None, max_length=200)
    rtsp_url: RtspUrl | None = None
    area_id: EntityId | None = None
    enabled: bool | None = None
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)
    sub_rtsp_url: RtspUrl | None = Field(default=None, description="null: no sub stream (content health reads the main)")


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
    #: camera clock minus the footage's index time from the stream's RTCP sender reports (live; None: unknown)
    stream_clock_offset_s: float | None = None
    #: the burned-in OSD time disagrees with the index time by more than the health bound
    clock_warning: bool = False
    state: str
    sub_rtsp_url: str | None = None  # redacted
    sub_stream_state: str | None = None  # what its sampler does now (recorder.substream), None: no sampler
    #: the camera's audio as its recorder last found it (FFmpeg's codec name, "" none); None
    #: before the recorder first connected, or when no recorder runs the camera
    audio_codec: str | None = None
    #: what the segments carry of it: "aac" (copied, or G.711 transcoded), "" not recorded
    audio_recorded: str | None = None
    #: why the camera's audio is not recorded (中文 / English); "" when it is, or there is none
    audio_note: str = ""


class NtpIn(BaseModel):
    server: str = Field(min_length=1, max_length=253, examples=["ntp.aliyun.com", "192.168.1.1"],
                        description="IPv4/IPv6 address or host name of the NTP server the camera should use")


class NtpServerView(BaseModel):
    type: str
    address: str


class CameraTimeView(BaseModel):
    """A camera's clock as it reported it just now (camera_discovery.onvif_time.TimeSettings)."""

    camera_id: str
    clock_offset_s: float | None
    clock_uncertainty_s: float | None
    date_time_type: str | None
    time_zone: str | None
    daylight_savings: bool | None
    ntp_from_dhcp: bool | None
    ntp_servers: list[NtpServerView]
    ntp_error: str | None


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
