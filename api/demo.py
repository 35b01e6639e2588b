"""``labwitness demo``: the whole product on one machine within a minute.

Everything is real except the cameras: GStreamer RTSP servers play a live test
pattern behind simulated ONVIF cameras (WS-Discovery on loopback, device and
media services with digest auth); the demo *discovers* them, registers them
into demo testing areas, records them into embedded SeaweedFS with six-month
COMPLIANCE Object Lock, indexes them in SQLite, pushes a few demo test
records, and serves the API and the web UI (sign in with a printed token).
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from datetime import timedelta

import uvicorn
from rich.console import Console
from rich.panel import Panel

from camera_discovery.discovery import discover
from camera_discovery.simulator.onvif import OnvifCameraSimulator
from camera_discovery.simulator.rtsp import Mount, RtspSimulator
from index.models import Area, Equipment
from labwitness.clock import utc_ms

from api.app import create_app
from api.runtime import Runtime
from api.settings import Settings

DEMO_AREAS = [("lixue", "力学室"), ("hunningtu", "混凝土室"), ("yanghu", "养护室"), ("yangpin", "样品室")]
DEMO_USER, DEMO_PASSWORD = "admin", "demo-Passw0rd"


def run_demo(settings: Settings, *, cameras: int, duration: float | None, stop: threading.Event, console: Console) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    mounts = {f"/cam{i + 1}": Mount.live(width=640, height=360, bitrate_kbps=800) for i in range(cameras)}
    with ExitStack() as stack:
        sim = stack.enter_context(RtspSimulator(mounts, workdir=settings.data_dir / "rtsp-sim"))
        onvif = [stack.enter_context(OnvifCameraSimulator(
            name=f"DemoCam-{i + 1}", rtsp_url=sim.url(f"/cam{i + 1}"), username=DEMO_USER, password=DEMO_PASSWORD,
            clock_offset_s=0.8 * i, discovery_port=settings.discovery_port, location=DEMO_AREAS[i % 4][1],
            serial=f"DEMO{i + 1:04d}")) for i in range(cameras)]
        rt = stack.enter_context(Runtime(settings))
        ours = {c.endpoint for c in onvif}
        console.print("正在发现摄像机 / discovering cameras (WS-Discovery) …")
        found = [d for d in discover(timeout=2.0, port=settings.discovery_port, interfaces=settings.discovery_ifaces or ["127.0.0.1"],
                                     username=DEMO_USER, password=DEMO_PASSWORD) if d.endpoint in ours]
        found.sort(key=lambda d: d.serial or "")
        for i, dev in enumerate(found):
            area_id, area_name = DEMO_AREAS[i % len(DEMO_AREAS)]
            rt.registry.put_area(Area(id=area_id, name=area_name, created_ms=0), actor="demo")
            if rt.registry.camera_by_endpoint(dev.endpoint) is None:
                existing = {c.id for c in rt.registry.cameras()}
                cam_id = next(f"demo-cam-{n}" for n in range(1, 1000) if f"demo-cam-{n}" not in existing)
                rt.registry.upsert_camera(rt.new_camera(
                    cam_id, dev.profiles[0].stream_uri, username=DEMO_USER, password=DEMO_PASSWORD,
                    name=f"演示摄像机 {i + 1} / demo camera {i + 1}", area_id=area_id, onvif_endpoint=dev.endpoint,
                    onvif_xaddr=dev.xaddrs[0] if dev.xaddrs else None, manufacturer=dev.manufacturer or "",
                    model=dev.model or "", serial=dev.serial or "",
                    clock_offset_ms=round(dev.clock_offset_s * 1000) if dev.clock_offset_s is not None else None,
                ), actor="demo")
        rt.sync_cameras()
        tokens = _demo_data(rt)
        app = create_app(settings, rt, sync_interval_s=5)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="api", daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.05)
        if not thread.is_alive():
            raise SystemExit(f"API could not start on {settings.host}:{settings.port} (port in use?)")
        base = f"http://{settings.host}:{settings.port}"
        once = app.state.web_sessions.issue_once(tokens["admin"], "demo-admin", "admin", ttl_s=3600)
        console.print(Panel.fit(
            f"[bold]labwitness 演示 / demo[/] — 发现 {len(found)}/{cameras} 路模拟 ONVIF 摄像机 discovered simulated cameras, "
            f"{settings.segment_seconds:g} s 分段 segments\n"
            f"网页界面 web UI: 打开下面的一次性链接（1 小时内有效）/ open the one-time link below (valid for an hour),\n"
            f"  或在 or at {base}/login 粘贴令牌 paste a token\n"
            f"  （监督令牌看报告录像，运维令牌看留存健康 / inspector token: report footage; operations token: health）\n"
            f"公开状态页 public status: {base}/\n"
            f"API 文档 docs:  {base}/docs\n"
            f"报告录像 report footage: curl -H 'Authorization: Bearer {tokens['inspector']}' {base}/api/v1/reports/JC-DEMO-0001/footage\n"
            f"管理员令牌 admin token:     {tokens['admin']}\n"
            f"监督令牌 inspector token:   {tokens['inspector']}\n"
            f"运维令牌 operations token:  {tokens['operations']}\n"
            f"对象存储 S3:    {rt.store.info.location} (Object Lock COMPLIANCE, "
            f"{rt.policy.months} 个月 months + {rt.policy.margin_days} 天 days)\n"
            f"数据 data:      {settings.data_dir.resolve()}\n"
            "按 Ctrl-C 停止 / press Ctrl-C to stop", title="labwitness"))
        # outside the panel, unwrapped: a newcomer copies or clicks it whole
        print(f"\n  {base}/login/once/{once}\n", flush=True)
        stop.wait(duration)
        console.print("正在停止并上传剩余录像 / stopping and uploading what is left …")
        server.should_exit = True
        thread.join(10)


def _demo_data(rt: Runtime) -> dict[str, str]:
    """Demo tokens (one per role) and two test records around 'now', so a report has footage."""
    tokens = {}
    for role in ("admin", "inspector", "operations", "ingest"):
        _, tokens[role] = rt.tokens.create(f"demo-{role}", role, "demo")
    cams = rt.registry.cameras()
    if cams:
        rt.registry.put_equipment(Equipment(id="UTM-DEMO-01", name="微机控制电液伺服万能试验机", area_id=cams[0].area_id,
                                            kind="万能试验机", created_ms=0), [cams[0].id], actor="demo")
        now = rt.clock.now()
        for n, (item, area, eq) in enumerate([("钢筋拉伸 / rebar tensile test", [], ["UTM-DEMO-01"]),
                                               ("混凝土抗压 / concrete compression", [cams[-1].area_id], [])], start=1):
            rt.records.upsert(f"DEMO-REC-{n}", {
                "report_no": f"JC-DEMO-000{n}", "commission_no": f"WT-DEMO-{n:03d}", "project_name": "演示工程 / demo project",
                "test_item": item, "sample_ids": [f"GX-DEMO-{n:05d}"], "area_ids": area, "equipment_ids": eq,
                "operator": "演示人员 / demo operator", "started_ms": utc_ms(now - timedelta(seconds=30)),
                "ended_ms": utc_ms(now + timedelta(minutes=2)),
            }, actor="demo")
    return tokens
