"""The commands that install and check a server: ``init``, ``doctor`` and ``store`` (deploy/README.md).

``init`` prints what it created and what it kept, on stderr; the bootstrap admin
token -- the one secret ever printed, once -- goes alone to stdout.  ``doctor``
exits 0 all ok, 1 a warning (or a check that could not tell), 2 an error.
``store`` runs the embedded SeaweedFS in the foreground (the
``labwitness-store`` systemd unit) for a service with ``embedded_store = "separate"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from api.cli.common import console, fail, setup_logging
from api.settings import DEFAULT_CONFIG, config_path, load_settings
from labwitness.errors import ConfigError, LabwitnessError

_MARK = {"ok": "[green]✔[/]", "warning": "[yellow]![/]", "unknown": "[yellow]?[/]", "error": "[red]✘[/]"}


def init(
    config: Annotated[Path, typer.Option(help="the config file to write (kept if it exists)")] = DEFAULT_CONFIG,
    data_dir: Annotated[Optional[Path], typer.Option(help="data directory (keys, index, embedded store)")] = None,
    spool_dir: Annotated[Optional[Path], typer.Option(help="spool directory (default: DATA_DIR/spool)")] = None,
    log_dir: Annotated[Optional[Path], typer.Option(help="log directory (default: stderr/journal only)")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="PostgreSQL URL (default: SQLite in DATA_DIR)")] = None,
    user: Annotated[Optional[str], typer.Option(help="the service user who owns what init creates")] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """初始化一个安装（可重复运行） / Write an installation: config, keys, directories, database; re-running keeps all."""
    setup_logging(verbose)
    from api.install import init_installation  # heavy: storage and index

    try:
        report = init_installation(config.absolute(), data_dir=data_dir, spool_dir=spool_dir, log_dir=log_dir,
                                   database_url=database_url, user=user)
    except LabwitnessError as e:
        fail(e)
    for what, where, action in report.steps:
        style = "green" if action == "created" else "dim"
        console.print(f"[{style}]{'已创建 / created' if action == 'created' else '已保留 / kept'}[/] {what}: {where}",
                      highlight=False, soft_wrap=True)
    if report.bootstrap_token:
        console.print("[bold]初始管理员令牌（仅显示这一次，只保存其哈希）/ bootstrap admin token (shown this once; only "
                      "its hash is stored):[/]")
        print(report.bootstrap_token, flush=True)
    console.print(f"下一步 / next: labwitness doctor (LABWITNESS_CONFIG={report.config})", highlight=False, soft_wrap=True)


def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
    skip: Annotated[Optional[list[str]], typer.Option(help="skip a check: files, storage, database, spool, clock, "
                                                            "cameras, port")] = None,
    config: Annotated[Optional[Path], typer.Option(help="the config file (default: LABWITNESS_CONFIG, else "
                                                         f"{DEFAULT_CONFIG} if it exists)")] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """检查安装并说明如何修复 / Check an installation and say what to fix. Exit 0 ok · 1 warning · 2 error."""
    setup_logging(verbose)
    from api.doctor import CHECKS, Doctor, as_json, exit_code, findings_for_bad_config  # heavy: storage and index

    unknown = set(skip or ()) - set(CHECKS)
    if unknown:
        fail(ConfigError(f"未知检查 / unknown check(s) {', '.join(sorted(unknown))}; one of {', '.join(CHECKS)}"))
    cfg = config or config_path()
    try:
        settings = load_settings(config_file=cfg)
        findings = Doctor(settings, skip=frozenset(skip or ())).run()
    except LabwitnessError as e:
        findings = findings_for_bad_config(e, cfg)
    if json_out:
        print(json.dumps(as_json(findings), ensure_ascii=False, indent=2))
    else:
        for f in findings:
            console.print(f"{_MARK.get(f.level, '?')} [bold]{f.check}[/]: {f.message}", highlight=False, soft_wrap=True)
            if f.fix and f.level != "ok":
                console.print(f"    → 修复 / fix: {f.fix}", highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code(findings))


def store(verbose: Annotated[bool, typer.Option("-v")] = False) -> None:
    """在前台运行内置对象存储（systemd 单元） / Run the embedded store in the foreground (its own systemd unit)."""
    setup_logging(verbose)
    from api.cli.run import stop_on_signals
    from storage.seaweed import EmbeddedSeaweed

    try:
        settings = load_settings()
    except LabwitnessError as e:
        fail(e)
    if settings.s3_endpoint:
        fail(ConfigError("已配置外部对象存储，无需内置存储 / an external S3 endpoint is configured: "
                         "there is no embedded store to run"))
    stop = stop_on_signals()
    sw = EmbeddedSeaweed(settings.data_dir / "seaweedfs")
    try:
        sw.start()
    except LabwitnessError as e:
        fail(e)
    if sw.attached:
        fail(ConfigError(f"内置存储已由另一进程运行 / the embedded store at {sw.data_dir} is already run by another "
                         "process (a serve with embedded_store = \"child\"?)"))
    console.print(f"embedded store S3 at {sw.endpoint} (data {sw.data_dir})", highlight=False)
    try:
        stop.wait()
    finally:
        sw.stop()
