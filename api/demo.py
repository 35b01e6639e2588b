"""``labwitness demo``: simulated cameras recorded into embedded S3, API and UI up.

Everything is real except the cameras: GStreamer RTSP servers play a live
test pattern, SeaweedFS (embedded, Object Lock on) stores the segments with
six-month COMPLIANCE retention, SQLite indexes them, and the API serves them.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from rich.console import Console
from rich.panel import Panel

from camera_discovery.simulator.rtsp import Mount, RtspSimulator
from index.models import Area

from api.app import create_app
from api.runtime import Runtime
from api.settings import Settings

DEMO_AREAS = [("lixue", "力学室"), ("hunningtu", "混凝土室"), ("yanghu", "养护室"), ("yangpin", "样品室")]


def run_demo(settings: Settings, *, cameras: int, duration: float | None, stop: threading.Event, console: Console) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    mounts = {f"/cam{i + 1}": Mount.live(width=640, height=360, bitrate_kbps=800) for i in range(cameras)}
    with RtspSimulator(mounts, workdir=settings.data_dir / "rtsp-sim") as sim, Runtime(settings) as rt:
        for i in range(cameras):
            area_id, area_name = DEMO_AREAS[i % len(DEMO_AREAS)]
            rt.registry.put_area(Area(id=area_id, name=area_name, created_ms=0), actor="demo")
            rt.registry.upsert_camera(rt.new_camera(
                f"demo-cam-{i + 1}", sim.url(f"/cam{i + 1}"), name=f"演示摄像机 {i + 1} / demo camera {i + 1}",
                area_id=area_id), actor="demo")
        rt.sync_cameras()
        app = create_app(settings, rt, sync_interval_s=5)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="api", daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.05)
        if not thread.is_alive():
            raise SystemExit(f"API could not start on {settings.host}:{settings.port} (port in use?)")
        base = f"http://{settings.host}:{settings.port}"
        console.print(Panel.fit(
            f"[bold]labwitness 演示 / demo[/] — {cameras} 路模拟摄像机 simulated cameras, "
            f"{settings.segment_seconds:g} s 分段 segments\n"
            f"界面 UI:        {base}/\n"
            f"API 文档 docs:  {base}/docs\n"
            f"健康 health:    {base}/api/v1/health\n"
            f"录像 footage:   {base}/api/v1/cameras/demo-cam-1/footage?start=…&end=…\n"
            f"对象存储 S3:    {rt.store.info.location} (Object Lock COMPLIANCE, "
            f"{rt.policy.months} 个月 months + {rt.policy.margin_days} 天 days)\n"
            f"数据 data:      {settings.data_dir.resolve()}\n"
            "按 Ctrl-C 停止 / press Ctrl-C to stop", title="labwitness"))
        stop.wait(duration)
        console.print("正在停止并上传剩余录像 / stopping and uploading what is left …")
        server.should_exit = True
        thread.join(10)
