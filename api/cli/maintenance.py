"""Keeping the footage and its index right: ``health``, ``retention`` (sweep, verify,
integrity, reconcile), ``index rebuild`` and ``db upgrade``.

The check commands answer by level (0 ok, 1 warning, 2 critical, 3 refused, 4 could
not run: :mod:`api.cli.common`); each retention job runs in a storage + index runtime
without recorders, one at a time across processes (the job lock of ``index.joblock``).
"""

from __future__ import annotations

import json
from typing import Annotated, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from api.cli.common import (
    COULD_NOT_RUN, actor, console, fail, print_json, runtime, settings_or_exit, setup_logging, table,
)
from api.settings import Settings, load_settings
from index.db import make_engine
from index.migrate import current, upgrade
from labwitness.errors import ConfigError, LabwitnessError
from retention.health import SEVERITY
from retention.integrity import run_integrity
from retention.rebuild import run_rebuild
from retention.reconcile import run_reconcile
from retention.sweep import SweepConfig, run_sweep
from retention.verify import run_verify

retention_app = typer.Typer(help="录像留存任务 / retention jobs (exit 0 ok, 1 warning, 2 critical, 3 refused, 4 could not run)",
                            no_args_is_help=True)
index_app = typer.Typer(help="索引维护 / index maintenance", no_args_is_help=True)
db_app = typer.Typer(help="索引数据库 / index database", no_args_is_help=True)

#: exit codes of the retention commands (ok/warning/critical as `health`)
JOB_EXIT = {"ok": 0, "warning": 1, "critical": 2, "refused": 3, "failed": COULD_NOT_RUN}
JOB_NAMES = {"sweep": "过期清理 / expiry sweep", "verify": "锁定校验 / lock verification",
             "integrity": "完整性审计 / integrity audit", "reconcile": "索引与存储核对 / reconcile",
             "rebuild": "索引重建 / index rebuild"}


def health(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """录像留存健康检查 / Retention health; exit 0 ok, 1 warning, 2 critical (for cron and monitoring)."""
    settings = settings_or_exit()
    try:
        with runtime(settings, recording=False) as rt:
            rep = rt.health.report()
    except LabwitnessError as e:
        rep = {"status": "critical", "problems": [str(e)], "cameras": {}}
    if json_out:
        print_json(rep)
    else:
        colour = {"ok": "green", "warning": "yellow", "critical": "red"}[rep["status"]]
        console.print(f"[{colour}]{rep['status']}[/]")
        for p in rep["problems"]:
            console.print(f"  - {p}")
        prot = rep.get("storage_protection")
        if prot:  # what the storage profile cannot prevent, said every time (README)
            console.print(f"存储配置 / storage profile: {prot['profile']}")
            for line in prot["does_not_protect_against"]:
                console.print(f"  ! {line}")
        table("摄像机 / cameras", ["camera", "area", "last segment age s", "coverage 24h", "gaps 24h"],
              [[cid, f["area_id"], f["last_segment_age_s"], f["coverage_24h"], f["gaps_24h"]] for cid, f in rep["cameras"].items()])
        if rep.get("witnesses"):
            table("外部见证 / witnesses", ["witness", "kind", "pending", "oldest s", "refused", "last error"],
                  [[n, w["kind"], w["pending"], w["oldest_age_s"], w["refused"], w["last_error"][:80]]
                   for n, w in rep["witnesses"].items()])
    raise typer.Exit(SEVERITY.index(rep["status"]))


def _run_job(json_out: bool, verbose: bool, job: Callable) -> None:
    """Run one retention job ``job(rt, settings)`` in a storage+index runtime (no recording),
    print its result, exit with its status."""
    setup_logging(verbose)
    try:
        settings = load_settings()
        with runtime(settings, recording=False) as rt:
            res = job(rt, settings)
    except LabwitnessError as e:
        if json_out:
            print_json({"status": "failed", "error": str(e)})
        fail(e, failed=JOB_EXIT["failed"])  # bad configuration is still 2 (api.cli.common)
    if json_out:
        print_json(res.to_json())
    else:
        colour = {"ok": "green", "warning": "yellow", "critical": "red", "refused": "red", "failed": "red"}[res.status]
        console.print(f"{JOB_NAMES[res.job]}: [{colour}]{res.status}[/] (run {res.run_id}{', dry run' if res.dry_run else ''})")
        if res.status == "refused":
            console.print(f"  {res.summary.get('message', res.summary.get('reason'))}")
        table("摘要 / summary", ["key", "value"],
              [[k, json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list)) else v]
               for k, v in res.summary.items() if k not in ("would_delete_versions", "message")])
        if res.findings:
            table(f"发现问题 {len(res.findings)} 项 / {len(res.findings)} findings",
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

    Refuses on an empty or fresh index, when this host's clock disagrees with the store's or with
    its time witnesses (the cameras' clocks over ONVIF, an external store), or when no witness
    independent of this host's clock answers;
    stops a camera when one run would delete more than --max-share of its footage."""
    if max_share is not None and not 0 < max_share <= 1:
        fail(ConfigError(f"--max-share 须在 (0, 1] 内 / --max-share must be in (0, 1], got {max_share}"))

    def job(rt, settings: Settings):
        cfg = SweepConfig(max_share=max_share or settings.sweep_max_share, max_clock_skew_s=settings.sweep_max_clock_skew_s,
                          retention_months=settings.retention_months, dry_run=dry_run, cameras=camera or None)
        return run_sweep(rt.store, rt.index.engine, rt.clock, cfg, actor=actor(), witnesses=rt.time_sources)

    _run_job(json_out, verbose, job)


@retention_app.command("verify")
def retention_verify(
    sample: Annotated[Optional[int], typer.Option(help="segments to read back (LABWITNESS_VERIFY_SAMPLE)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """校验存储桶与录像的合规锁定 / Check the bucket's Object Lock and read back sampled versions' retention."""
    _run_job(json_out, verbose, lambda rt, st: run_verify(rt.store, rt.index.engine, rt.clock,
                                                          sample=sample or st.verify_sample, actor=actor()))


@retention_app.command("integrity")
def retention_integrity(
    budget_bytes: Annotated[Optional[int], typer.Option(help="bytes to re-hash (LABWITNESS_INTEGRITY_BUDGET_BYTES)")] = None,
    budget_objects: Annotated[Optional[int], typer.Option(help="objects to re-hash (LABWITNESS_INTEGRITY_BUDGET_OBJECTS)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """重新计算录像哈希，发现篡改或丢失 / Re-hash recent and sampled footage; report altered or missing versions."""
    _run_job(json_out, verbose, lambda rt, st: run_integrity(
        rt.store, rt.index.engine, rt.clock, budget_bytes=budget_bytes or st.integrity_budget_bytes,
        budget_objects=budget_objects or st.integrity_budget_objects, actor=actor()))


@retention_app.command("reconcile")
def retention_reconcile(
    repair: Annotated[bool, typer.Option("--repair", help="re-index versions that have no row when that is safe")] = False,
    camera: Annotated[Optional[list[str]], typer.Option("--camera", help="only this camera (repeat)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """核对索引与存储（双向） / Compare index and storage both ways; never deletes footage or rows."""
    _run_job(json_out, verbose, lambda rt, st: run_reconcile(rt.store, rt.index.engine, rt.clock, repair=repair,
                                                             cameras=camera or None, actor=actor()))


@index_app.command("rebuild")
def index_rebuild(
    check_footage: Annotated[bool, typer.Option(
        "--check-footage", help="list every footage version and compare (slow: hours for months of footage; "
                                "`retention reconcile` compares too)")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """仅凭存储重建索引 / Rebuild the index from storage alone: the journal, then footage metadata.

    Restores segments, gaps, test records with revisions, the audit log, export packages, holds and
    the registry (cameras enabled, without credentials: enter those again). Only adds what is
    missing; cameras known only from footage metadata come back disabled."""
    def job(rt, settings: Settings):
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, disable=json_out) as bar:
            task = bar.add_task("重建索引 / rebuilding index", total=None)
            phases = {"journal": "读取日志 / reading the journal", "footage": "核对录像 / checking footage per camera"}

            def progress(done: int, total: int, phase: str = "footage") -> None:
                bar.update(task, completed=done, total=total, description=phases.get(phase, phase))

            return run_rebuild(rt.store, rt.index.engine, rt.clock, actor=actor(), progress=progress,
                               check_footage=check_footage)

    _run_job(json_out, verbose, job)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """把索引数据库迁移到最新结构 / Migrate the index database to the newest schema."""
    settings = settings_or_exit()
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        console.print(f"索引已是最新 / index at revision {current(engine)} ({engine.url.render_as_string(hide_password=True)})")
    except Exception as e:
        console.print(f"[red]迁移失败 / migration failed:[/] {e}")
        raise typer.Exit(1)
    finally:
        engine.dispose()
