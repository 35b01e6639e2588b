"""``labwitness plan``: what an installation needs for its cameras and retention (docs/planning.md).

The arithmetic and its measured constants are :mod:`retention.capacity`; this module
gathers the inputs (flags, settings, or the running installation's measured rates with
``--from-running``) and prints the plan, zh-CN first, or ``--json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from api.cli.common import console, fail, print_json, settings_or_exit, table
from labwitness.errors import LabwitnessError, ValidationError
from retention import capacity

#: how far back --from-running measures the cameras' bitrates and gap rate
WINDOW_H = 24


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1000
    return ""


def _bps(n: float) -> str:
    return f"{n / 1e6:,.1f} Mbit/s"


def process_cpu(pid: int, proc: Path = Path("/proc")) -> tuple[float, float]:
    """(CPU seconds, seconds alive) of a local process, from /proc (user + system)."""
    fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
    uptime = float((proc / "uptime").read_text().split()[0]) - int(fields[19]) / tick  # starttime (field 22)
    return cpu, uptime


def _from_running(settings, bitrate: Optional[str], recorder_pid: Optional[int], kw: dict) -> capacity.PlanInput:
    from index.db import make_engine
    from index.rates import camera_rates
    from index.registry import Registry
    from labwitness.clock import SystemClock, utc_ms

    now = utc_ms(SystemClock().now())
    engine = make_engine(settings.db_url)
    try:
        cameras = [c.id for c in Registry(engine, lambda: now).cameras(enabled_only=True)]
        rates = camera_rates(engine, now - WINDOW_H * 3600_000, now)
    finally:
        engine.dispose()
    sources = {}
    if recorder_pid is not None:
        cpu, alive = process_cpu(recorder_pid)
        if alive > 0 and cameras:
            kw["cpu_s_per_stream_min"] = cpu / (alive / 60) / len(cameras)
            sources["cpu"] = (f"measured: process {recorder_pid}, {cpu:.0f} CPU-s over {alive / 60:.0f} min, "
                              f"{len(cameras)} cameras")
    sources.setdefault("cpu", f"constant: {kw['cpu_s_per_stream_min']} CPU-s per stream-minute (bench/README.md)")
    measured_gaps = [r.gaps for c, r in rates.items() if c in cameras]
    gaps_day = sum(measured_gaps) / len(cameras) * 24 / WINDOW_H if cameras else None
    return capacity.from_measured(cameras, {c: r.bitrate_bps for c, r in rates.items()},
                                  fallback_bps=capacity.parse_bitrate(bitrate) if bitrate else None,
                                  gaps_per_camera_day=gaps_day, sources=sources, **kw)


def plan(
    cameras: Annotated[Optional[int], typer.Option(help="摄像机数 / number of cameras")] = None,
    bitrate: Annotated[Optional[str], typer.Option(help="每路码率 / bitrate per camera: 4M, 4Mbit, 512k")] = None,
    months: Annotated[Optional[int], typer.Option(help="保留月数 / retention months (default: LABWITNESS_RETENTION_MONTHS; >= 6)")] = None,
    margin_days: Annotated[Optional[int], typer.Option(help="保留余量天数 / margin days (default: LABWITNESS_RETENTION_MARGIN_DAYS)")] = None,
    replication: Annotated[int, typer.Option(help="存储副本数 / copies the store keeps of each object")] = 2,
    segment_seconds: Annotated[Optional[float], typer.Option(help="分段秒数 / segment length (default: LABWITNESS_SEGMENT_SECONDS)")] = None,
    cpu_per_stream: Annotated[float, typer.Option(help="每路每分钟 CPU 秒 / CPU-s per stream-minute (measured: bench/README.md)")] = capacity.CPU_S_PER_STREAM_MIN,
    cores_per_node: Annotated[Optional[float], typer.Option(help="每台录像节点核数 / cores per recorder node (default: this machine's)")] = None,
    max_cameras_per_node: Annotated[int, typer.Option(help="每节点摄像机上限 / camera cap per recorder node")] = capacity.DEFAULT_MAX_CAMERAS_PER_NODE,
    outage_hours: Annotated[float, typer.Option(help="存储中断时长（用于缓存与补传）/ storage outage to ride out in the spool")] = 24.0,
    catch_up_hours: Annotated[float, typer.Option(help="中断后补传时限 / time to upload the backlog after it")] = 24.0,
    from_running: Annotated[bool, typer.Option("--from-running", help="用运行中系统的实测值 / use the running installation's measured rates")] = False,
    recorder_pid: Annotated[Optional[int], typer.Option(help="with --from-running: the recording process whose CPU to measure")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """容量规划：存储、录像节点、带宽、数据库 / Capacity plan: storage, recorder nodes, bandwidth, database."""
    settings = settings_or_exit()
    kw = dict(months=settings.retention_months if months is None else months,
              margin_days=settings.retention_margin_days if margin_days is None else margin_days,
              replication=replication,
              segment_seconds=settings.segment_seconds if segment_seconds is None else segment_seconds,
              cpu_s_per_stream_min=cpu_per_stream, cores_per_node=cores_per_node or float(os.cpu_count() or 1),
              max_cameras_per_node=max_cameras_per_node, outage_hours=outage_hours, catch_up_hours=catch_up_hours)
    try:
        if from_running:
            if cameras is not None:
                raise ValidationError("--from-running 与 --cameras 不能同用 / --from-running takes the cameras from the registry, not --cameras")
            inp = _from_running(settings, bitrate, recorder_pid, kw)
        else:
            if cameras is None or bitrate is None:
                raise ValidationError("请给出 --cameras 和 --bitrate，或 --from-running / give --cameras and --bitrate, or --from-running")
            kw["sources"] = {"cpu": f"{'given' if cpu_per_stream != capacity.CPU_S_PER_STREAM_MIN else 'constant (bench/README.md)'}: "
                                    f"{cpu_per_stream} CPU-s per stream-minute"}
            inp = capacity.PlanInput.uniform(cameras, bitrate, **kw)
        p = capacity.plan(inp)
    except LabwitnessError as e:
        fail(e)
    if json_out:
        print_json(p.to_json())
        return
    i = p.inputs
    console.print(f"{p.cameras} 路摄像机 / cameras, {_bps(p.ingest_bps)} 合计 / in total "
                  f"(平均 / mean {_bps(i['bitrate_bps_mean'])}); 保留 / retention {i['months']} 个月 / months "
                  f"+ {i['margin_days']} 天余量 / days margin + 清理间隔 / sweep interval = {p.held_days} 天 / days")
    for what, where in i["sources"].items():
        console.print(f"  {what}: {where}")
    table("容量规划 / capacity plan", ["项目 / item", "值 / value"], [
        ["存储（单副本）/ storage, one copy", _bytes(p.storage_logical_bytes)],
        [f"存储（{i['replication']} 副本）/ storage, {i['replication']} copies", _bytes(p.storage_replicated_bytes)],
        [f"磁盘配置（≤ {capacity.STORAGE_MAX_FILL:.0%} 占用）/ disk to provision (≤ {capacity.STORAGE_MAX_FILL:.0%} full)", _bytes(p.storage_provision_bytes)],
        ["每节点路数（CPU / 上限）/ streams per node (CPU / cap)", f"{p.streams_per_node_cpu} / {i['max_cameras_per_node']} → {p.streams_per_node}"],
        ["录像节点 / recorder nodes", f"{p.recorder_nodes} (N+1: {p.recorder_nodes_n_plus_1})"],
        ["摄像机接入 / ingest from cameras", _bps(p.ingest_bps)],
        ["上传到存储 / to storage (S3)", _bps(p.to_storage_bps)],
        ["存储内部复制 / inside the store (replicas)", _bps(p.storage_internal_bps)],
        [f"中断 {i['outage_hours']:g} h 后补传 / catch-up upload after a {i['outage_hours']:g} h outage", _bps(p.catch_up_upload_bps)],
        ["每节点缓存 / spool per node for that outage", _bytes(p.spool_bytes_per_node)],
        ["分段行数 / segment rows held", f"{p.segments_held:,}"],
        ["数据库（PostgreSQL）/ database", f"{_bytes(p.db_bytes)} (配置 / provision {_bytes(p.db_provision_bytes)})"],
    ])
