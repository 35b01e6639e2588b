"""``labwitness demo``: the whole product on one machine within a minute.

Everything is real except the cameras: GStreamer RTSP servers play a live test
pattern behind simulated ONVIF cameras (WS-Discovery on loopback, device and
media services with digest auth); the demo *discovers* them, registers them
into demo testing areas, records them into embedded SeaweedFS with six-month
COMPLIANCE Object Lock, indexes them in SQLite, pushes a few demo test
records, and serves the API and the web UI (sign in with a printed token).
Running it again on the same data directory reuses what the first run set up
(:mod:`api.demo_setup`).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from rich.console import Console
from rich.panel import Panel

from camera_discovery.discovery import discover
from camera_discovery.models import DiscoveredDevice
from camera_discovery.soap import preload as preload_wsdls
from simulator.onvif import OnvifCameraSimulator
from simulator.rtsp import Mount, RtspSimulator
from storage.seaweed import EmbeddedSeaweed

from api.demo_setup import DEMO_AREAS, DEMO_PASSWORD, DEMO_REPORT, DEMO_USER, ROLES, DemoSetup, demo_serial, set_up
from api.installation import announce_served_url, served_url, write_json
from api.runtime import Runtime
from api.settings import Settings

log = logging.getLogger(__name__)

ROLE_LABELS = {"admin": "管理员 admin", "inspector": "监督 inspector", "operations": "运维 operations", "ingest": "数据上传 ingest"}


def start_simulators(stack: ExitStack, settings: Settings, cameras: int) -> list[OnvifCameraSimulator]:
    """``cameras`` simulated ONVIF cameras over one RTSP server; stopped when ``stack`` closes."""
    mounts = {f"/cam{i + 1}": Mount.live(width=640, height=360, bitrate_kbps=800) for i in range(cameras)}
    sim = stack.enter_context(RtspSimulator(mounts, workdir=settings.data_dir / "rtsp-sim"))
    return [stack.enter_context(OnvifCameraSimulator(
        name=f"DemoCam-{i + 1}", rtsp_url=sim.url(f"/cam{i + 1}"), username=DEMO_USER, password=DEMO_PASSWORD,
        clock_offset_s=0.8 * i, discovery_port=settings.discovery_port, location=DEMO_AREAS[i % 4][1],
        serial=demo_serial(i + 1))) for i in range(cameras)]


def discover_simulators(settings: Settings, sims: list[OnvifCameraSimulator]) -> list[DiscoveredDevice]:
    """The demo's own cameras, found by WS-Discovery as a lab's would be (the probe ends once all
    of them answered, or after 2 s)."""
    ours = {c.endpoint for c in sims}
    found = discover(timeout=2.0, port=settings.discovery_port, interfaces=settings.discovery_ifaces or ["127.0.0.1"],
                     username=DEMO_USER, password=DEMO_PASSWORD, expect=ours)
    return [d for d in found if d.endpoint in ours]


def start_in_parallel(stack: ExitStack, settings: Settings, cameras: int, seaweed: EmbeddedSeaweed | None,
                      marks: "StartSteps", console: Console) -> tuple[list[DiscoveredDevice], Runtime]:
    """The simulators (a GStreamer process) and their discovery in a thread while the runtime starts
    (SeaweedFS, migrations): neither needs the other, and each mostly waits (for its processes, for
    answers).  The ONVIF WSDLs that discovery needs load meanwhile too."""
    def preload() -> None:
        try:
            preload_wsdls()
        except Exception:  # discovery loads them again, and says what is wrong
            log.debug("preloading the ONVIF WSDLs failed", exc_info=True)

    threading.Thread(target=preload, name="onvif-wsdl-preload", daemon=True).start()
    # entered before the runtime, so stopped after it (last in, first out): the recorders end their
    # sessions and upload before their cameras go away
    sim_stack = stack.enter_context(ExitStack())
    found: list[DiscoveredDevice] = []
    failed: list[BaseException] = []

    def simulate_and_discover() -> None:
        try:
            with marks.step("simulators"):
                sims = start_simulators(sim_stack, settings, cameras)
            console.print("正在发现摄像机 / discovering cameras (WS-Discovery) …")
            with marks.step("discovery"):
                found.extend(discover_simulators(settings, sims))
        except BaseException as e:  # raised in the caller's thread below
            failed.append(e)

    t = threading.Thread(target=simulate_and_discover, name="demo-simulators", daemon=True)
    t.start()
    try:
        with marks.step("runtime"):
            rt = stack.enter_context(Runtime(settings, seaweed=seaweed))
    finally:
        t.join()
    if failed:
        raise failed[0]
    return found, rt


def copyable_lines(base: str, setup: DemoSetup, once_code: str, data_dir: Path) -> list[str]:
    """What a newcomer copies or clicks: printed outside the panel, one command a line, never wrapped."""
    tokens, lw = setup.tokens, _cli()
    report_url = f"{base}/api/v1/reports/{DEMO_REPORT}/footage"
    lines = ["一次性登录链接（1 小时内有效）/ one-time sign-in link (valid for an hour):", f"  {base}/login/once/{once_code}",
             "", f"令牌 / tokens (或在 or at {base}/login 粘贴 paste):"]
    lines += [f"  {role:<11} {tokens[role]}    # {ROLE_LABELS[role]}" for role in ROLES]
    lines += ["", "报告录像 / report footage (inspector):",
              f"  curl -sS -H {shlex.quote('Authorization: Bearer ' + tokens['inspector'])} {shlex.quote(report_url)}",
              "", "在另一个终端使用命令行 / the CLI beside the demo, in another terminal:",
              f"  export LABWITNESS_DATA_DIR={shlex.quote(str(data_dir.resolve()))}",
              f"  {lw} export {DEMO_REPORT} --out evidence.zip && {lw} key export --out lab.pub",
              f"  {lw} verify evidence.zip --public-key lab.pub"]
    return lines


def _cli() -> str:
    """The ``labwitness`` command as another terminal can run it (the venv there may not be active)."""
    beside = Path(sys.executable).with_name("labwitness")
    return shlex.quote(str(beside)) if beside.exists() else "labwitness"


#: where the demo notes how long its start-up steps took (read by bench/demo_start.py)
START_FILE = "demo-start.json"


class StartSteps:
    """(wall start, wall end) of each start-up step, written to ``DATA_DIR/demo-start.json`` once
    the API is up: where the time to the first recorded segment goes (bench/demo_start.py)."""

    def __init__(self) -> None:
        now = time.time()
        self.steps: dict[str, tuple[float, float]] = {"run_demo": (now, now)}  # the imports are done by now

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t = time.time()
        try:
            yield
        finally:
            self.steps[name] = (t, time.time())

    def write(self, data_dir: Path, more: dict[str, tuple[float, float]]) -> None:
        write_json(data_dir / START_FILE, {"pid": os.getpid(), "steps": {**self.steps, **more}})


def run_demo(settings: Settings, *, cameras: int, duration: float | None, stop: threading.Event, console: Console,
             out: TextIO | None = None, seaweed: EmbeddedSeaweed | None = None) -> None:
    """``seaweed``: the embedded store of ``settings.data_dir``, already launched (the CLI launches it
    before importing this module); the runtime waits for it and stops it."""
    out = out or sys.stdout
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    rt: Runtime | None = None
    marks = StartSteps()
    with ExitStack() as stack:
        found, rt = start_in_parallel(stack, settings, cameras, seaweed, marks, console)
        with marks.step("demo_setup"):
            setup = set_up(rt, found)
        with marks.step("recorders_started"):
            rt.sync_cameras()
        public = announce_served_url(settings)  # exports, here and from the CLI, point their QR codes here
        # the web app and server are imported (seconds on a busy box) only now, while the cameras
        # record their first segments: recording does not wait for the API (bench/demo_start.py)
        import uvicorn

        from api.app import create_app

        app = create_app(settings, rt, sync_interval_s=5)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="api", daemon=True)
        with marks.step("api"):
            thread.start()
            while not server.started and thread.is_alive():
                time.sleep(0.05)
        if not thread.is_alive():
            raise SystemExit(f"API could not start on {settings.host}:{settings.port} (port in use?)")
        marks.write(settings.data_dir, rt.start_steps)
        base = served_url(settings.host, settings.port)
        admin_row = rt.tokens.lookup(setup.tokens["admin"])  # the code names the token's row, never the token
        once = app.state.web_sessions.issue_once(admin_row.id, "demo-admin", "admin", ttl_s=3600)
        console.print(Panel.fit(
            f"[bold]labwitness 演示 / demo[/] — 发现 {len(found)}/{cameras} 路模拟 ONVIF 摄像机 discovered simulated cameras "
            f"({', '.join(setup.cameras)}), {settings.segment_seconds:g} s 分段 segments\n"
            f"网页界面 web UI: {base}/  （监督令牌看报告录像，运维令牌看留存健康 / inspector: report footage; operations: health）\n"
            f"API 文档 docs: {base}/docs · 实验室公钥 lab public key: {base}/.well-known/labwitness-keys.json\n"
            f"证据包验证地址 verify URLs in packages: {public}/verify/…\n"
            f"对象存储 S3: {rt.store.info.location} (Object Lock COMPLIANCE, "
            f"{rt.policy.months} 个月 months + {rt.policy.margin_days} 天 days)\n"
            f"数据 data: {settings.data_dir.resolve()} (再次运行沿用同一批摄像机和令牌 / a second run reuses its cameras and tokens)\n"
            "按 Ctrl-C 停止 / press Ctrl-C to stop", title="labwitness"))
        # outside the panel and past rich: a terminal may wrap a long line on screen, but copying gives it back whole
        print("\n" + "\n".join(copyable_lines(base, setup, once, settings.data_dir)) + "\n", file=out, flush=True)
        stop.wait(duration)
        console.print("正在停止并上传剩余录像 / stopping and uploading what is left …")
        server.should_exit = True
        thread.join(10)
    report = rt.recorder.stop_report if rt is not None and rt.recorder is not None else None
    if report is not None:
        console.print(report.message(), style=None if report.spool_empty else "red", markup=False,
                      soft_wrap=True)  # a path to copy, never folded
