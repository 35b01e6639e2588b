"""The registry commands: ``discover``, ``camera``, ``area`` and ``equipment``.

Every change is made through :class:`index.registry.Registry` (a revision with
who and when); a camera URL is checked by the one rule (``recorder.rtsp_url``)
and shown only redacted (``labwitness.url_secrets``).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from api.camera_rows import discovered_sub_url, new_camera
from api.cli.common import actor, console, fail, index_only, print_json, settings_or_exit, table
from camera_discovery.discovery import discover as run_discovery
from index.models import Area, Equipment
from labwitness.clock import SystemClock, utc_ms
from labwitness.errors import ConfigError, LabwitnessError
from labwitness.url_secrets import redact_url

camera_app = typer.Typer(help="摄像机 / cameras", no_args_is_help=True)
area_app = typer.Typer(help="检测区域 / testing areas", no_args_is_help=True)
equipment_app = typer.Typer(help="检测设备 / lab instruments", no_args_is_help=True)


def discover(
    timeout: Annotated[float, typer.Option(help="seconds to wait for answers")] = 3.0,
    host: Annotated[Optional[list[str]], typer.Option("--host", help="probe this host, host:port or CIDR (<= /22) directly")] = None,
    no_multicast: Annotated[bool, typer.Option("--no-multicast", help="only the --host probes")] = False,
    username: Annotated[Optional[str], typer.Option(help="ONVIF user for the device queries")] = None,
    password: Annotated[Optional[str], typer.Option(help="ONVIF password", envvar="LABWITNESS_ONVIF_PASSWORD")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """发现 ONVIF 摄像机（WS-Discovery） / Find ONVIF cameras (WS-Discovery multicast and directed probes)."""
    settings = settings_or_exit()
    try:
        devices = run_discovery(timeout=timeout, hosts=host or [], multicast=not no_multicast, username=username,
                                password=password, port=settings.discovery_port, interfaces=settings.discovery_ifaces)
    except (LabwitnessError, ValueError) as e:
        fail(e if isinstance(e, LabwitnessError) else ConfigError(str(e)))
    if json_out:
        print_json([d.to_json() for d in devices])
        return
    table(f"发现 {len(devices)} 台设备 / {len(devices)} devices", ["endpoint", "address", "model", "serial", "clock offset s", "main stream", "error"],
          [[d.endpoint, (d.xaddrs or [""])[0], f"{d.manufacturer or ''} {d.model or ''}", d.serial,
            d.clock_offset_s, redact_url(d.profiles[0].stream_uri) if d.profiles else "", d.error] for d in devices])


def _discovered(endpoint: str, settings, timeout: float, username: str | None, password: str | None) -> tuple[str, dict]:
    """The main stream URL and the ONVIF facts of the device ``endpoint``, asked again now."""
    devices = run_discovery(timeout=timeout, username=username, password=password, port=settings.discovery_port,
                            interfaces=settings.discovery_ifaces)
    dev = next((d for d in devices if d.endpoint == endpoint), None)
    if dev is None:
        fail(LabwitnessError(f"未发现设备 / device {endpoint!r} did not answer the discovery probe"))
    if dev.error or not dev.profiles:
        fail(LabwitnessError(f"设备查询失败 / device query failed: {dev.error or 'no media profiles'}"))
    return dev.profiles[0].stream_uri, {
        "sub_url": discovered_sub_url(dev),
        "onvif_endpoint": dev.endpoint, "onvif_xaddr": (dev.xaddrs or [None])[0],
        "manufacturer": dev.manufacturer or "", "model": dev.model or "", "serial": dev.serial or "",
        "clock_offset_ms": round(dev.clock_offset_s * 1000) if dev.clock_offset_s is not None else None}


@camera_app.command("add")
def camera_add(
    id: Annotated[str, typer.Option("--id", help="camera id (letters, digits, . _ -)")],
    url: Annotated[Optional[str], typer.Option(help="RTSP URL")] = None,
    from_discovery: Annotated[Optional[str], typer.Option("--from-discovery", help="endpoint reference from `labwitness discover`")] = None,
    area: Annotated[Optional[str], typer.Option(help="area id")] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
    username: Annotated[Optional[str], typer.Option()] = None,
    password: Annotated[Optional[str], typer.Option(envvar="LABWITNESS_CAMERA_PASSWORD")] = None,
    timeout: Annotated[float, typer.Option(help="discovery timeout with --from-discovery")] = 3.0,
    sub_url: Annotated[Optional[str], typer.Option("--sub-url", help="sub stream for content-health pictures "
                                                   "(never recorded; the camera's credentials serve it)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """登记摄像机 / Register a camera by RTSP URL or from a discovery result."""
    if (url is None) == (from_discovery is None):
        fail(ConfigError("需要 --url 或 --from-discovery 之一 / give exactly one of --url and --from-discovery"))
    settings = settings_or_exit()
    onvif: dict = {}
    if from_discovery:
        url, onvif = _discovered(from_discovery, settings, timeout, username, password)
    if sub_url:
        onvif["sub_url"] = sub_url
    try:
        with index_only(settings) as ix:
            row = new_camera(ix.cipher, utc_ms(SystemClock().now()), id, url, username=username,
                             password=password, name=name, area_id=area, **onvif)
            cam = ix.registry.add_camera(row, actor())
    except LabwitnessError as e:
        fail(e)
    view = {"id": cam.id, "rtsp_url": redact_url(cam.rtsp_url), "area_id": cam.area_id, "username": cam.username,
            "has_password": bool(cam.password_enc), "onvif_endpoint": cam.onvif_endpoint,
            "sub_rtsp_url": redact_url(cam.sub_rtsp_url) if cam.sub_rtsp_url else None}
    print_json(view) if json_out else console.print(f"已登记 / registered {cam.id} ({view['rtsp_url']})")


@camera_app.command("list")
def camera_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """列出摄像机 / List cameras (passwords are never shown)."""
    with index_only(settings_or_exit()) as ix:
        cams = ix.registry.cameras()
    rows = [{"id": c.id, "name": c.name, "rtsp_url": redact_url(c.rtsp_url), "area_id": c.area_id, "enabled": c.enabled,
             "username": c.username, "has_password": bool(c.password_enc), "onvif_endpoint": c.onvif_endpoint,
             "manufacturer": c.manufacturer, "model": c.model} for c in cams]
    if json_out:
        print_json(rows)
    else:
        table("摄像机 / cameras", ["id", "name", "area", "enabled", "rtsp_url"],
              [[r["id"], r["name"], r["area_id"], r["enabled"], r["rtsp_url"]] for r in rows])


@camera_app.command("remove")
def camera_remove(id: Annotated[str, typer.Argument(help="camera id")]) -> None:
    """移除摄像机（停止录制；已录视频保留至保留期满） / Remove a camera: recording stops, its footage stays until retention ends."""
    try:
        with index_only(settings_or_exit()) as ix:
            ix.registry.remove_camera(id, actor())
    except LabwitnessError as e:
        fail(e)
    console.print(f"已移除 / removed {id}; 已录视频按保留期保留 / its footage stays locked until retention ends")


@camera_app.command("retrust-tls")
def camera_retrust_tls(id: Annotated[str, typer.Argument(help="camera id")]) -> None:
    """重新信任摄像机的新 TLS 证书 / Re-trust an rtsps:// camera's new TLS certificate (check its fingerprint
    with the camera first): the recorder pins the certificate it sees next."""
    from recorder.spool import forget_tls_pins

    settings = settings_or_exit()
    try:
        with index_only(settings) as ix:
            ix.registry.camera(id)  # NotFoundError for an unknown camera
            old = forget_tls_pins(settings.spool_path, id)
            ix.audit.append(actor(), "camera.retrust_tls", id, {"forgotten": old})
    except LabwitnessError as e:
        fail(e)
    if not old:
        console.print(f"{id}: 没有已固定的证书 / no pinned certificate (it is pinned at its next rtsps:// connection)")
    for hostport, fp in old.items():
        console.print(f"{id}: 已忘记 / forgot {hostport} SHA-256 {fp}; 下次连接时固定新证书 / the next connection pins the new one")


@area_app.command("add")
def area_add(id: Annotated[str, typer.Option("--id")], name: Annotated[str, typer.Option()],
             description: Annotated[str, typer.Option()] = "") -> None:
    """新增或修改检测区域 / Create or rename a testing area."""
    try:
        with index_only(settings_or_exit()) as ix:
            ix.registry.put_area(Area(id=id, name=name, description=description, created_ms=0), actor())
    except LabwitnessError as e:
        fail(e)


@area_app.command("list")
def area_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    with index_only(settings_or_exit()) as ix:
        rows = [{"id": a.id, "name": a.name, "description": a.description} for a in ix.registry.areas()]
    print_json(rows) if json_out else table("检测区域 / areas", ["id", "name"], [[r["id"], r["name"]] for r in rows])


@equipment_app.command("add")
def equipment_add(id: Annotated[str, typer.Option("--id", help="the lab's asset number")],
                  name: Annotated[str, typer.Option()], area: Annotated[Optional[str], typer.Option()] = None,
                  kind: Annotated[str, typer.Option()] = "",
                  camera: Annotated[Optional[list[str]], typer.Option("--camera", help="camera watching it (repeat)")] = None) -> None:
    """登记检测设备及其摄像机 / Register an instrument and the cameras that watch it."""
    try:
        with index_only(settings_or_exit()) as ix:
            ix.registry.put_equipment(Equipment(id=id, name=name, area_id=area, kind=kind, created_ms=0), camera or [], actor())
    except LabwitnessError as e:
        fail(e)


@equipment_app.command("list")
def equipment_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    with index_only(settings_or_exit()) as ix:
        rows = [{"id": e.id, "name": e.name, "area_id": e.area_id, "kind": e.kind, "camera_ids": cams}
                for e, cams in ix.registry.equipment()]
    print_json(rows) if json_out else table("检测设备 / equipment", ["id", "name", "area", "cameras"],
                                             [[r["id"], r["name"], r["area_id"], ", ".join(r["camera_ids"])] for r in rows])
