"""``labwitness camera time show|set-ntp|sync``: read and fix a registered camera's clock over ONVIF.

The same service as the REST API and the web UI (:class:`api.camera_time.CameraClocks`):
the camera's stored credentials are used (decrypted in memory, never printed), and every
change is audited under the operating-system user.  Exit codes as every command: 2 for a
bad NTP server or a camera without an ONVIF address, 1 when the camera fails or refuses.
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import actor, console, fail, index_only, print_json, settings_or_exit
from labwitness.clock import SystemClock
from labwitness.errors import LabwitnessError

time_app = typer.Typer(help="摄像机时钟（ONVIF） / a camera's clock, over ONVIF", no_args_is_help=True)

CameraId = Annotated[str, typer.Argument(help="camera id")]
JsonOut = Annotated[bool, typer.Option("--json")]


def _run(what, json_out: bool) -> None:
    from api.camera_time import CameraClocks  # keeps --help fast

    try:
        with index_only(settings_or_exit()) as ix:
            got = what(CameraClocks(ix.registry, ix.audit, ix.cipher, SystemClock()))
    except LabwitnessError as e:
        fail(e)
    if json_out:
        print_json(got)
        return
    off, unc = got["clock_offset_s"], got["clock_uncertainty_s"] or 0.0
    servers = ", ".join(s["address"] for s in got["ntp_servers"]) or "—"
    shown = "?" if off is None else f"{off:+.1f} s (±{unc:.1f})"
    console.print(f"{got['camera_id']}: 时钟偏差 / clock offset {shown} · "
                  f"时间来源 / time source {got['date_time_type'] or '?'} · NTP {servers}"
                  + (f" · GetNTP: {got['ntp_error']}" if got["ntp_error"] else ""))


@time_app.command("show")
def show(camera_id: CameraId, json_out: JsonOut = False) -> None:
    """读取摄像机时钟与 NTP 设置 / Read the camera's clock offset and NTP settings now."""
    _run(lambda clocks: clocks.show(actor(), camera_id), json_out)


@time_app.command("set-ntp")
def set_ntp(camera_id: CameraId,
            server: Annotated[str, typer.Argument(help="NTP server: IPv4/IPv6 address or host name")],
            json_out: JsonOut = False) -> None:
    """设置摄像机 NTP 服务器并改用 NTP 校时 / Point the camera at an NTP server and switch it to NTP time."""
    _run(lambda clocks: clocks.set_ntp(actor(), "admin", camera_id, server), json_out)


@time_app.command("sync")
def sync(camera_id: CameraId, json_out: JsonOut = False) -> None:
    """将摄像机时间设为本服务器当前时间 / Set the camera's clock to this server's time now (manual time)."""
    _run(lambda clocks: clocks.sync(actor(), "admin", camera_id), json_out)
