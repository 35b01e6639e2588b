"""The ``labwitness`` command (Typer).

Every command builds :class:`Settings` once (environment, config file, flags)
and passes it in.  Errors a person can act on are printed as one clear line
and exit with the code of their class, by the one rule of :mod:`api.cli_exit`
(2 invalid arguments or configuration, 1 the operation failed, 3 refused),
which also catches what a command lets escape.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from api.cli_exit import HELP as EXIT_HELP, CliGroup, fail
from labwitness.errors import ConfigError, LabwitnessError
from labwitness.url_secrets import redact_url

app = typer.Typer(cls=CliGroup, help="labwitness — 检测区域录像留存与索引 / testing-area video retention and indexing",
                  epilog=EXIT_HELP, no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="索引数据库 / index database", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("apscheduler", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(e: LabwitnessError) -> None:
    fail(e)


def _settings(**overrides):
    from api.settings import load_settings

    try:
        return load_settings(**overrides)
    except LabwitnessError as e:
        _fail(e)


def _print_stop_report(rt) -> None:
    """The stop message: what this run uploaded, and that the spool is empty (or what is left, and where)."""
    report = getattr(getattr(rt, "recorder", None), "stop_report", None)
    if report is not None:
        console.print(report.message(), style=None if report.spool_empty else "red", markup=False,
                      soft_wrap=True)  # a path to copy, never folded


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@app.command()
def record(
    url: Annotated[Optional[str], typer.Option(help="RTSP URL (rtsp://user:pass@host:554/path)")] = None,
    camera_id: Annotated[Optional[str], typer.Option("--camera-id", help="camera id (with --url)")] = None,
    duration: Annotated[Optional[float], typer.Option(help="seconds to record, then upload everything and exit")] = None,
    segment_seconds: Annotated[Optional[float], typer.Option(help="target segment length (LABWITNESS_SEGMENT_SECONDS)")] = None,
    upload_timeout: Annotated[float, typer.Option(help="seconds to wait for the spool to drain at exit")] = 600.0,
    json_out: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """录制一路码流（或所有已配置摄像机） / Record one stream (or every configured camera).

    Goes through the same spool -> storage -> index path as the service and,
    with --duration, exits 0 once everything recorded is stored and locked.
    """
    _setup_logging(verbose)
    from api.runtime import Runtime
    from recorder.service import CameraSpec
    from recorder.worker import check_rtsp_url
    from storage.layout import check_camera_id

    settings = _settings(segment_seconds=segment_seconds)
    if (url is None) != (camera_id is None):
        _fail(ConfigError("--url 与 --camera-id 需同时给出 / --url and --camera-id go together"))
    if duration is not None and duration <= 0:
        _fail(ConfigError(f"--duration 必须大于 0 / --duration must be > 0, got {duration}"))
    if url is not None:  # a bad URL or id is a ValidationError: exit 2 before anything starts
        check_rtsp_url(url)
        check_camera_id(camera_id)
    stop = _stop_on_signals()
    try:
        with Runtime(settings) as rt:
            if url is not None:
                try:
                    rt.registry.upsert_camera(rt.new_camera(camera_id, url), actor="cli:record")
                except LabwitnessError as e:
                    logging.getLogger(__name__).warning("camera not registered in the index yet: %s", e)
                cams = [CameraSpec(camera_id, url)]
            else:
                cams = [rt.camera_spec(c) for c in rt.registry.cameras(enabled_only=True)]
                if not cams:
                    _fail(ConfigError("没有已启用的摄像机 / no enabled cameras configured; use --url"))
            rt.recorder.sync(cams)
            stop.wait(duration)
            workers = rt.recorder.workers()
            drained = rt.recorder.stop(drain_timeout=upload_timeout)  # closes the open segments first
            summary = {cid: {"segments": w.status.segments, "frames": w.status.frames,
                             "last_error": w.status.last_error} for cid, w in workers.items()}
    except LabwitnessError as e:
        _fail(e)
    if json_out:
        print(json.dumps({"cameras": summary, "uploaded": drained}, ensure_ascii=False, default=str))
    else:
        for cid, s in summary.items():
            console.print(f"{cid}: {s['segments']} segments, {s['frames']} frames {s['last_error']}")
    _print_stop_report(rt)
    if not drained:
        raise typer.Exit(1)
    if not any(s["segments"] for s in summary.values()):
        errs = "; ".join(s["last_error"] for s in summary.values() if s["last_error"])
        console.print(f"[red]未录到任何画面 / nothing was recorded:[/] {errs}")
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """API、界面、录像与任务同一进程运行（单机部署） / Run API, UI, recorders and jobs in one process."""
    _setup_logging(verbose)
    import uvicorn

    from api.app import create_app
    from api.installation import announce_served_url

    settings = _settings(host=host, port=port)
    try:
        service = create_app(settings)
        announce_served_url(settings)  # `labwitness export` beside it puts the same verify URL into packages
        uvicorn.run(service, host=settings.host, port=settings.port, log_level="info")
    except LabwitnessError as e:
        _fail(e)
    _print_stop_report(getattr(service.state, "runtime", None))


@app.command()
def demo(
    port: Annotated[int, typer.Option()] = 8000,
    cameras: Annotated[int, typer.Option(help="simulated cameras")] = 2,
    segment_seconds: Annotated[float, typer.Option()] = 10.0,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its storage, index and spool")] = Path(".labwitness-demo"),
    duration: Annotated[Optional[float], typer.Option(help="stop after this many seconds (default: until Ctrl-C)")] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """演示：模拟摄像机 + 内置存储 + 服务 / Demo: simulated cameras recorded into embedded storage, API up."""
    _setup_logging(verbose)
    from api.demo import run_demo

    import os

    # the simulated cameras live on loopback: probe from there unless told otherwise
    settings = _settings(data_dir=data_dir, segment_seconds=segment_seconds, port=port,
                         discovery_interfaces=None if os.environ.get("LABWITNESS_DISCOVERY_INTERFACES") else "127.0.0.1")
    try:
        run_demo(settings, cameras=cameras, duration=duration, stop=_stop_on_signals(), console=console)
    except LabwitnessError as e:
        _fail(e)


camera_app = typer.Typer(help="摄像机 / cameras", no_args_is_help=True)
area_app = typer.Typer(help="检测区域 / testing areas", no_args_is_help=True)
equipment_app = typer.Typer(help="检测设备 / lab instruments", no_args_is_help=True)
app.add_typer(camera_app, name="camera")
app.add_typer(area_app, name="area")
app.add_typer(equipment_app, name="equipment")


def _actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _print_json(data) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    Console().print(t)


@app.command()
def discover(
    timeout: Annotated[float, typer.Option(help="seconds to wait for answers")] = 3.0,
    host: Annotated[Optional[list[str]], typer.Option("--host", help="probe this host, host:port or CIDR (<= /22) directly")] = None,
    no_multicast: Annotated[bool, typer.Option("--no-multicast", help="only the --host probes")] = False,
    username: Annotated[Optional[str], typer.Option(help="ONVIF user for the device queries")] = None,
    password: Annotated[Optional[str], typer.Option(help="ONVIF password", envvar="LABWITNESS_ONVIF_PASSWORD")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """发现 ONVIF 摄像机（WS-Discovery） / Find ONVIF cameras (WS-Discovery multicast and directed probes)."""
    from camera_discovery.discovery import discover as run_discovery

    settings = _settings()
    try:
        devices = run_discovery(timeout=timeout, hosts=host or [], multicast=not no_multicast, username=username,
                                password=password, port=settings.discovery_port, interfaces=settings.discovery_ifaces)
    except (LabwitnessError, ValueError) as e:
        _fail(e if isinstance(e, LabwitnessError) else ConfigError(str(e)))
    if json_out:
        _print_json([d.to_json() for d in devices])
        return
    _table(f"发现 {len(devices)} 台设备 / {len(devices)} devices", ["endpoint", "address", "model", "serial", "clock offset s", "main stream", "error"],
           [[d.endpoint, (d.xaddrs or [""])[0], f"{d.manufacturer or ''} {d.model or ''}", d.serial,
             d.clock_offset_s, redact_url(d.profiles[0].stream_uri) if d.profiles else "", d.error] for d in devices])


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
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """登记摄像机 / Register a camera by RTSP URL or from a discovery result."""
    from api.runtime import index_only, new_camera
    from labwitness.clock import SystemClock, utc_ms

    if (url is None) == (from_discovery is None):
        _fail(ConfigError("需要 --url 或 --from-discovery 之一 / give exactly one of --url and --from-discovery"))
    settings = _settings()
    onvif: dict = {}
    if from_discovery:
        from camera_discovery.discovery import discover as run_discovery

        devices = run_discovery(timeout=timeout, username=username, password=password, port=settings.discovery_port,
                                interfaces=settings.discovery_ifaces)
        dev = next((d for d in devices if d.endpoint == from_discovery), None)
        if dev is None:
            _fail(LabwitnessError(f"未发现设备 / device {from_discovery!r} did not answer the discovery probe"))
        if dev.error or not dev.profiles:
            _fail(LabwitnessError(f"设备查询失败 / device query failed: {dev.error or 'no media profiles'}"))
        url = dev.profiles[0].stream_uri
        onvif = {"onvif_endpoint": dev.endpoint, "onvif_xaddr": (dev.xaddrs or [None])[0],
                 "manufacturer": dev.manufacturer or "", "model": dev.model or "", "serial": dev.serial or "",
                 "clock_offset_ms": round(dev.clock_offset_s * 1000) if dev.clock_offset_s is not None else None}
    try:
        with index_only(settings) as ix:
            reg, cipher = ix.registry, ix.cipher
            row = new_camera(cipher, utc_ms(SystemClock().now()), id, url, username=username,
                             password=password, name=name, area_id=area, **onvif)
            cam = reg.add_camera(row, _actor())
    except LabwitnessError as e:
        _fail(e)
    view = {"id": cam.id, "rtsp_url": redact_url(cam.rtsp_url), "area_id": cam.area_id, "username": cam.username,
            "has_password": bool(cam.password_enc), "onvif_endpoint": cam.onvif_endpoint}
    _print_json(view) if json_out else console.print(f"已登记 / registered {cam.id} ({view['rtsp_url']})")


@camera_app.command("list")
def camera_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """列出摄像机 / List cameras (passwords are never shown)."""
    from api.runtime import index_only

    with index_only(_settings()) as ix:
        reg = ix.registry
        cams = reg.cameras()
    rows = [{"id": c.id, "name": c.name, "rtsp_url": redact_url(c.rtsp_url), "area_id": c.area_id, "enabled": c.enabled,
             "username": c.username, "has_password": bool(c.password_enc), "onvif_endpoint": c.onvif_endpoint,
             "manufacturer": c.manufacturer, "model": c.model} for c in cams]
    if json_out:
        _print_json(rows)
    else:
        _table("摄像机 / cameras", ["id", "name", "area", "enabled", "rtsp_url"],
               [[r["id"], r["name"], r["area_id"], r["enabled"], r["rtsp_url"]] for r in rows])


@camera_app.command("remove")
def camera_remove(id: Annotated[str, typer.Argument(help="camera id")]) -> None:
    """移除摄像机（停止录制；已录视频保留至保留期满） / Remove a camera: recording stops, its footage stays until retention ends."""
    from api.runtime import index_only

    try:
        with index_only(_settings()) as ix:
            reg = ix.registry
            reg.remove_camera(id, _actor())
    except LabwitnessError as e:
        _fail(e)
    console.print(f"已移除 / removed {id}; 已录视频按保留期保留 / its footage stays locked until retention ends")


@area_app.command("add")
def area_add(id: Annotated[str, typer.Option("--id")], name: Annotated[str, typer.Option()],
             description: Annotated[str, typer.Option()] = "") -> None:
    """新增或修改检测区域 / Create or rename a testing area."""
    from api.runtime import index_only
    from index.models import Area

    try:
        with index_only(_settings()) as ix:
            reg = ix.registry
            reg.put_area(Area(id=id, name=name, description=description, created_ms=0), _actor())
    except LabwitnessError as e:
        _fail(e)


@area_app.command("list")
def area_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    from api.runtime import index_only

    with index_only(_settings()) as ix:
        reg = ix.registry
        rows = [{"id": a.id, "name": a.name, "description": a.description} for a in reg.areas()]
    _print_json(rows) if json_out else _table("检测区域 / areas", ["id", "name"], [[r["id"], r["name"]] for r in rows])


@equipment_app.command("add")
def equipment_add(id: Annotated[str, typer.Option("--id", help="the lab's asset number")],
                  name: Annotated[str, typer.Option()], area: Annotated[Optional[str], typer.Option()] = None,
                  kind: Annotated[str, typer.Option()] = "",
                  camera: Annotated[Optional[list[str]], typer.Option("--camera", help="camera watching it (repeat)")] = None) -> None:
    """登记检测设备及其摄像机 / Register an instrument and the cameras that watch it."""
    from api.runtime import index_only
    from index.models import Equipment

    try:
        with index_only(_settings()) as ix:
            reg = ix.registry
            reg.put_equipment(Equipment(id=id, name=name, area_id=area, kind=kind, created_ms=0), camera or [], _actor())
    except LabwitnessError as e:
        _fail(e)


@equipment_app.command("list")
def equipment_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    from api.runtime import index_only

    with index_only(_settings()) as ix:
        reg = ix.registry
        rows = [{"id": e.id, "name": e.name, "area_id": e.area_id, "kind": e.kind, "camera_ids": cams} for e, cams in reg.equipment()]
    _print_json(rows) if json_out else _table("检测设备 / equipment", ["id", "name", "area", "cameras"],
                                              [[r["id"], r["name"], r["area_id"], ", ".join(r["camera_ids"])] for r in rows])


token_app = typer.Typer(help="API 令牌 / API tokens", no_args_is_help=True)
audit_app = typer.Typer(help="审计日志 / audit log", no_args_is_help=True)
records_app = typer.Typer(help="检测记录 / test records", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(records_app, name="records")


@token_app.command("create")
def token_create(name: Annotated[str, typer.Option()], role: Annotated[str, typer.Option(help="admin | inspector | operations | ingest")],
                 json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """创建 API 令牌（只显示一次） / Create an API token (shown once)."""
    from api.runtime import index_only

    try:
        with index_only(_settings()) as ix:
            tokens, audit = ix.tokens, ix.audit
            row, token = tokens.create(name, role, _actor())
            audit.append(_actor(), "token.create", f"token:{row.id}", {"name": name, "role": role}, "admin")
    except LabwitnessError as e:  # an unknown role is a ValidationError: exit 2
        _fail(e)
    _print_json({"id": row.id, "name": row.name, "role": row.role, "token": token}) if json_out else print(token)


@token_app.command("list")
def token_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    from api.runtime import index_only

    with index_only(_settings()) as ix:
        tokens = ix.tokens
        rows = [{"id": t.id, "name": t.name, "role": t.role, "prefix": t.prefix, "revoked": t.revoked_ms is not None}
                for t in tokens.list()]
    _print_json(rows) if json_out else _table("令牌 / tokens", ["id", "name", "role", "prefix", "revoked"],
                                              [list(r.values()) for r in rows])


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument()]) -> None:
    """吊销令牌 / Revoke a token."""
    from api.runtime import index_only

    try:
        with index_only(_settings()) as ix:
            tokens, audit = ix.tokens, ix.audit
            t = tokens.revoke(token_id)
            audit.append(_actor(), "token.revoke", f"token:{token_id}", {"name": t.name}, "admin")
    except LabwitnessError as e:
        _fail(e)


@audit_app.command("verify")
def audit_verify(expected_head: Annotated[Optional[str], typer.Option(help="the last hash you kept, to catch a cut tail")] = None,
                 json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """校验审计日志哈希链 / Verify the audit log's hash chain; exit 1 if anything was altered or removed."""
    from api.runtime import index_only

    with index_only(_settings()) as ix:
        audit = ix.audit
        rep = audit.verify(expected_head)
    if json_out:
        _print_json(rep.__dict__)
    elif rep.ok:
        console.print(f"[green]审计日志完整 / audit log intact[/]: {rep.events} events, head {rep.head}")
    else:
        console.print(f"[red]审计日志被篡改 / audit log tampered[/]: event {rep.broken_at}: {rep.reason}")
    raise typer.Exit(0 if rep.ok else 1)


@records_app.command("import")
def records_import(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with a header row")],
                   json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """从 CSV 补录检测记录 / Back-fill test records from CSV.

    Columns: record_id, report_no, commission_no, project_name, test_item, sample_ids, area_ids, equipment_ids,
    operator, started_at, ended_at (lists separated by ';', times ISO 8601 with offset). Every row is validated
    like the API does; bad rows are reported with their line number and the rest are imported.
    """
    from api.runtime import index_only

    import csv

    from pydantic import ValidationError

    from api.records_routes import TestRecordIn

    settings = _settings()
    results = []
    with index_only(settings) as ix, open(file, newline="", encoding="utf-8-sig") as f:
        audit, records = ix.audit, ix.records
        for line, row in enumerate(csv.DictReader(f), start=2):
            rid = (row.get("record_id") or "").strip()
            try:
                from labwitness.ids import check_number

                check_number(rid, "记录编号", "record id")
                data = {k: (row.get(k) or "").strip() for k in ("report_no", "commission_no", "project_name", "test_item",
                                                               "operator", "started_at", "ended_at")}
                for k in ("sample_ids", "area_ids", "equipment_ids"):
                    data[k] = [x.strip() for x in (row.get(k) or "").split(";") if x.strip()]
                body = TestRecordIn(**data)
                if body.ended_at - body.started_at > __import__("datetime").timedelta(hours=settings.max_record_hours):
                    raise ValueError(f"window longer than {settings.max_record_hours} hours")
                bad_a, bad_e = records.unknown_refs(list(body.area_ids), list(body.equipment_ids))
                if bad_a or bad_e:
                    raise ValueError(f"unknown areas {bad_a} / equipment {bad_e}")
                r, created, changed = records.upsert(rid, body.content(), _actor())
                if changed:
                    audit.append(_actor(), "test_record.import", rid, {"revision": r.revision}, "ingest")
                results.append({"line": line, "record_id": rid, "status": "created" if created else ("updated" if changed else "unchanged")})
            except (ValidationError, ValueError) as e:
                msg = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()) if isinstance(e, ValidationError) else str(e)
                results.append({"line": line, "record_id": rid, "status": "error", "error": msg})
    bad = [r for r in results if r["status"] == "error"]
    if json_out:
        _print_json(results)
    else:
        console.print(f"导入 {len(results) - len(bad)} 条，失败 {len(bad)} 条 / imported {len(results) - len(bad)}, failed {len(bad)}")
        for r in bad:
            console.print(f"  line {r['line']} ({r['record_id']}): {r['error']}")
    raise typer.Exit(1 if bad else 0)


@app.command()
def export(report_no: Annotated[str, typer.Argument()],
           out: Annotated[Optional[Path], typer.Option(help="where to write the package zip")] = None,
           verbose: Annotated[bool, typer.Option("-v")] = False) -> None:
    """导出报告的证据包 / Export a report's signed evidence package."""
    _setup_logging(verbose)
    from rich.progress import Progress

    from api.evidence import new_package_id
    from api.exporter import package_file_name
    from api.runtime import Runtime

    settings = _settings()
    try:
        with Runtime(settings, recording=False) as rt:
            pkg = rt.exporter.start(report_no, _actor(), "inspector", new_package_id())
            with Progress(console=console) as bar:
                task = bar.add_task(f"导出 / exporting {report_no}", total=1.0)
                while True:
                    pkg = rt.exporter.wait(pkg.id, 0.5)
                    bar.update(task, completed=pkg.progress)
                    if pkg.status != "running":
                        break
            if pkg.status != "done":
                _fail(LabwitnessError(f"导出失败 / export failed: {pkg.error}"))
            target = out or Path(package_file_name(report_no, pkg.id))  # never the raw number: it may hold '/'
            # the package leaves storage here: audited like the API's download, before the first byte
            rt.audit.append(_actor(), "export.download", pkg.report_no, {"package_id": pkg.id, "via": "cli"}, "inspector")
            with rt.store.open(pkg.package_key, pkg.package_version_id) as body, open(target, "wb") as f:
                for chunk in body.stream(1 << 20):
                    f.write(chunk)
    except LabwitnessError as e:
        _fail(e)
    verify_url = json.loads(pkg.manifest)["verify_url"]  # what the package's QR code says
    console.print(f"证据包 / package: {target}  sha256 {pkg.package_sha256}\n验证 / verify: {verify_url}")
    for w in json.loads(pkg.warnings or "[]"):  # what the package cannot vouch for (api.export_checks)
        console.print(f"[yellow]注意 / warning:[/] {w['message']}")


@app.command()
def verify(package: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
           public_key: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                               help="the lab's published public key (PEM) to trust")] = None,
           json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """离线验证证据包 / Verify an evidence package offline: signature and every file's hash."""
    from api.evidence import verify_package

    try:
        rep = verify_package(package, public_key.read_bytes() if public_key else None)
    except LabwitnessError as e:
        _fail(e)
    if json_out:
        _print_json({"ok": rep.ok, "signature_valid": rep.signature_valid, "key_fingerprint": rep.key_fingerprint,
                     "trusted_key": rep.trusted_key, "files": rep.files, "problems": rep.problems,
                     "report_no": rep.manifest.get("report_no"), "package_id": rep.manifest.get("package_id")})
    else:
        head = "[green]真实有效 / genuine[/]" if rep.ok else "[red]验证失败 / NOT genuine[/]"
        console.print(f"{head} — report {rep.manifest.get('report_no')} · key {rep.key_fingerprint}")
        for name, state in sorted(rep.files.items()):
            console.print(f"  {'✓' if state == 'ok' else '✗'} {name}: {state}")
        for p in rep.problems:
            console.print(f"  [red]{p}[/]")
        if rep.trusted_key is None:
            console.print("  (未指定 --public-key：只验证了完整性，未验证签发者 / no --public-key: integrity checked, issuer not)")
    raise typer.Exit(0 if rep.ok else 1)


@app.command()
def health(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """录像留存健康检查 / Retention health; exit 0 ok, 1 warning, 2 critical (for cron and monitoring)."""
    from api.health import SEVERITY, health_report
    from api.runtime import Runtime

    settings = _settings()
    try:
        with Runtime(settings, recording=False) as rt:
            rep = health_report(rt)
    except LabwitnessError as e:
        rep = {"status": "critical", "problems": [str(e)], "cameras": {}}
    if json_out:
        _print_json(rep)
    else:
        colour = {"ok": "green", "warning": "yellow", "critical": "red"}[rep["status"]]
        console.print(f"[{colour}]{rep['status']}[/]")
        for p in rep["problems"]:
            console.print(f"  - {p}")
        _table("摄像机 / cameras", ["camera", "area", "last segment age s", "coverage 24h", "gaps 24h"],
               [[cid, f["area_id"], f["last_segment_age_s"], f["coverage_24h"], f["gaps_24h"]] for cid, f in rep["cameras"].items()])
    raise typer.Exit(SEVERITY.index(rep["status"]))


retention_app = typer.Typer(help="录像留存任务 / retention jobs (exit 0 ok, 1 warning, 2 critical, 3 refused, 4 could not run)",
                            no_args_is_help=True)
index_app = typer.Typer(help="索引维护 / index maintenance", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
app.add_typer(index_app, name="index")

#: exit codes of the retention commands (ok/warning/critical as `health`)
JOB_EXIT = {"ok": 0, "warning": 1, "critical": 2, "refused": 3, "failed": 4}
JOB_NAMES = {"sweep": "过期清理 / expiry sweep", "verify": "锁定校验 / lock verification",
             "integrity": "完整性审计 / integrity audit", "reconcile": "索引与存储核对 / reconcile",
             "rebuild": "索引重建 / index rebuild"}


def _run_job(json_out: bool, verbose: bool, job, **overrides) -> None:
    """Run one retention job in a storage+index runtime (no recording), print, exit with its status."""
    _setup_logging(verbose)
    from api.runtime import Runtime
    from api.settings import load_settings

    try:
        settings = load_settings(**overrides)
        with Runtime(settings, recording=False) as rt:
            res = job(rt, settings)
    except LabwitnessError as e:
        if json_out:
            _print_json({"status": "failed", "error": str(e)})
        fail(e, failed=JOB_EXIT["failed"])  # bad configuration is still 2 (api.cli_exit)
    if json_out:
        _print_json(res.to_json())
    else:
        colour = {"ok": "green", "warning": "yellow", "critical": "red", "refused": "red", "failed": "red"}[res.status]
        console.print(f"{JOB_NAMES[res.job]}: [{colour}]{res.status}[/] (run {res.run_id}{', dry run' if res.dry_run else ''})")
        if res.status == "refused":
            console.print(f"  {res.summary.get('message', res.summary.get('reason'))}")
        _table("摘要 / summary", ["key", "value"],
               [[k, json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list)) else v]
                for k, v in res.summary.items() if k not in ("would_delete_versions", "message")])
        if res.findings:
            _table(f"发现问题 {len(res.findings)} 项 / {len(res.findings)} findings",
                   ["kind", "severity", "camera", "key", "version", "detail"],
                   [[f["kind"], f["severity"], f["camera_id"], f["key"], f["version_id"], f["detail"]]
                    for f in res.findings[:200]])
    raise typer.Exit(JOB_EXIT[res.status])


@retention_app.command("sweep")
def retention_sweep(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only report what would be deleted")] = False,
    max_share: Annotated[Optional[float], typer.Option(help="largest share of one camera's footage one run may delete "
                                                           "(LABWITNESS_SWEEP_MAX_SHARE, default 0.10)")] = None,
    camera: Annotated[Optional[list[str]], typer.Option("--camera", help="only this camera (repeat)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """删除保留期满且未被冻结的录像 / Delete footage past its retain-until (index and storage) and not on hold.

    Refuses on an empty or fresh index and when this host's clock disagrees with the store's;
    stops a camera when one run would delete more than --max-share of its footage."""
    from retention.sweep import SweepConfig, run_sweep

    if max_share is not None and not 0 < max_share <= 1:
        _fail(ConfigError(f"--max-share 须在 (0, 1] 内 / --max-share must be in (0, 1], got {max_share}"))

    def job(rt, settings):
        cfg = SweepConfig(max_share=max_share or settings.sweep_max_share, max_clock_skew_s=settings.sweep_max_clock_skew_s,
                          retention_months=settings.retention_months, dry_run=dry_run, cameras=camera or None)
        return run_sweep(rt.store, rt.index.engine, rt.clock, cfg, actor=_actor())

    _run_job(json_out, verbose, job)


@retention_app.command("verify")
def retention_verify(
    sample: Annotated[Optional[int], typer.Option(help="segments to read back (LABWITNESS_VERIFY_SAMPLE)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """校验存储桶与录像的合规锁定 / Check the bucket's Object Lock and read back sampled versions' retention."""
    from retention.verify import run_verify

    _run_job(json_out, verbose, lambda rt, st: run_verify(rt.store, rt.index.engine, rt.clock,
                                                          sample=sample or st.verify_sample, actor=_actor()))


@retention_app.command("integrity")
def retention_integrity(
    budget_bytes: Annotated[Optional[int], typer.Option(help="bytes to re-hash (LABWITNESS_INTEGRITY_BUDGET_BYTES)")] = None,
    budget_objects: Annotated[Optional[int], typer.Option(help="objects to re-hash (LABWITNESS_INTEGRITY_BUDGET_OBJECTS)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """重新计算录像哈希，发现篡改或丢失 / Re-hash recent and sampled footage; report altered or missing versions."""
    from retention.integrity import run_integrity

    _run_job(json_out, verbose, lambda rt, st: run_integrity(
        rt.store, rt.index.engine, rt.clock, budget_bytes=budget_bytes or st.integrity_budget_bytes,
        budget_objects=budget_objects or st.integrity_budget_objects, actor=_actor()))


@retention_app.command("reconcile")
def retention_reconcile(
    repair: Annotated[bool, typer.Option("--repair", help="re-index versions that have no row when that is safe")] = False,
    camera: Annotated[Optional[list[str]], typer.Option("--camera", help="only this camera (repeat)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """核对索引与存储（双向） / Compare index and storage both ways; never deletes footage or rows."""
    from retention.reconcile import run_reconcile

    _run_job(json_out, verbose, lambda rt, st: run_reconcile(rt.store, rt.index.engine, rt.clock, repair=repair,
                                                             cameras=camera or None, actor=_actor()))


@index_app.command("rebuild")
def index_rebuild(
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """仅凭对象元数据重建索引 / Rebuild the index (cameras, segments, gaps) from object metadata alone.

    Only adds what is missing; rebuilt cameras are disabled until an admin sets their URL again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from retention.rebuild import run_rebuild

    def job(rt, settings):
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, disable=json_out) as bar:
            task = bar.add_task("重建索引 / rebuilding index", total=None)
            return run_rebuild(rt.store, rt.index.engine, rt.clock, actor=_actor(),
                               progress=lambda done, total: bar.update(task, completed=done, total=total))

    _run_job(json_out, verbose, job)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """把索引数据库迁移到最新结构 / Migrate the index database to the newest schema."""
    from index.db import make_engine
    from index.migrate import current, upgrade

    settings = _settings()
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        console.print(f"索引已是最新 / index at revision {current(engine)} ({engine.url.render_as_string(hide_password=True)})")
    except Exception as e:
        console.print(f"[red]迁移失败 / migration failed:[/] {e}")
        raise typer.Exit(1)
    finally:
        engine.dispose()


def _register_extensions() -> None:
    """Command groups that live in their own modules (content health, reports)."""
    from api.cli_content import register as register_content
    from api.cli_key import register as register_key
    from api.cli_report import register as register_report

    register_content(app)
    register_report(app)
    register_key(app)


_register_extensions()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
