"""Test records in, evidence out: ``records import``, ``export`` and ``verify``.

A record imported here goes through the same ingest as the REST API's
(:mod:`api.ingest`: same checks, revisions and audit actions).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError as PydanticValidationError
from rich.progress import Progress

from api.cli.common import actor, console, fail, index_only, print_json, runtime, settings_or_exit, setup_logging
from api.evidence import new_package_id, verify_package
from api.ingest import TestRecordIn, ingest
from api.seal_check import witness_holds
from api.trust import apply_key_list, load_key_list
from labwitness.errors import LabwitnessError, ValidationError

records_app = typer.Typer(help="检测记录 / test records", no_args_is_help=True)

#: the CSV columns beside record_id; the *_ids columns hold lists separated by ';'
_TEXT_COLUMNS = ("report_no", "commission_no", "project_name", "test_item", "operator", "started_at", "ended_at")
_LIST_COLUMNS = ("sample_ids", "area_ids", "equipment_ids")


def _refusal(e: Exception) -> str:
    """One line saying why a row was refused (pydantic's field errors, or the ingest rule's message)."""
    if isinstance(e, PydanticValidationError):
        return "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
    return str(e)


@records_app.command("import")
def records_import(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with a header row")],
                   json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """从 CSV 补录检测记录 / Back-fill test records from CSV.

    Columns: record_id, report_no, commission_no, project_name, test_item, sample_ids, area_ids, equipment_ids,
    operator, started_at, ended_at (lists separated by ';', times ISO 8601 with offset). Every row is validated
    like the API does; bad rows are reported with their line number and the rest are imported.
    """
    settings = settings_or_exit()
    results = []
    with index_only(settings) as ix, open(file, newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            rid = (row.get("record_id") or "").strip()
            data: dict = {k: (row.get(k) or "").strip() for k in _TEXT_COLUMNS}
            data.update({k: [x.strip() for x in (row.get(k) or "").split(";") if x.strip()] for k in _LIST_COLUMNS})
            try:
                done = ingest(ix.records, ix.audit, rid, TestRecordIn(**data), actor=actor(), role="ingest",
                              max_hours=settings.max_record_hours)
                results.append({"line": line, "record_id": rid, "status": done.status})
            except (PydanticValidationError, ValidationError) as e:
                results.append({"line": line, "record_id": rid, "status": "error", "error": _refusal(e)})
    bad = [r for r in results if r["status"] == "error"]
    if json_out:
        print_json(results)
    else:
        console.print(f"导入 {len(results) - len(bad)} 条，失败 {len(bad)} 条 / imported {len(results) - len(bad)}, failed {len(bad)}")
        for r in bad:
            console.print(f"  line {r['line']} ({r['record_id']}): {r['error']}")
    raise typer.Exit(1 if bad else 0)


def export(report_no: Annotated[str, typer.Argument()],
           out: Annotated[Optional[Path], typer.Option(help="where to write the package zip")] = None,
           verbose: Annotated[bool, typer.Option("-v")] = False) -> None:
    """导出报告的证据包 / Export a report's signed evidence package."""
    setup_logging(verbose)
    from api.export_worker import build_here, worker_id
    from api.exporter import package_file_name  # heavy: the exporter pulls in av; keeps --help fast

    settings = settings_or_exit()
    try:
        with runtime(settings, recording=False) as rt:
            pkg = rt.exporter.start(report_no, actor(), "inspector", new_package_id())
            # built here unless a jobs node's worker claimed it first (then its progress shows here)
            build_here(rt.exporter, worker_id(f"cli@{rt.node_id}", 0), pkg.id)
            with Progress(console=console) as bar:
                task = bar.add_task(f"导出 / exporting {report_no}", total=1.0)
                while True:
                    pkg = rt.exporter.wait(pkg.id, 0.5)
                    bar.update(task, completed=pkg.progress)
                    if pkg.status not in ("queued", "running"):
                        break
            if pkg.status != "done":
                fail(LabwitnessError(f"导出失败 / export failed: {pkg.error}"))
            target = out or Path(package_file_name(report_no, pkg.id))  # never the raw number: it may hold '/'
            # the package leaves storage here: audited like the API's download, before the first byte
            rt.audit.append(actor(), "export.download", pkg.report_no, {"package_id": pkg.id, "via": "cli"}, "inspector")
            with rt.store.open(pkg.package_key, pkg.package_version_id) as body, open(target, "wb") as f:
                for chunk in body.stream(1 << 20):
                    f.write(chunk)
    except LabwitnessError as e:
        fail(e)
    verify_url = json.loads(pkg.manifest)["verify_url"]  # what the package's QR code says
    console.print(f"证据包 / package: {target}  sha256 {pkg.package_sha256}\n验证 / verify: {verify_url}")
    for w in json.loads(pkg.warnings or "[]"):  # what the package cannot vouch for (api.export_checks)
        console.print(f"[yellow]注意 / warning:[/] {w['message']}")


def verify(package: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
           public_key: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                               help="the lab's public key (PEM, `labwitness key export`) to trust")] = None,
           keys: Annotated[Optional[str], typer.Option(
               help="the lab's published key list to trust: a file or https://…/.well-known/labwitness-keys.json")] = None,
           witness: Annotated[Optional[str], typer.Option(
               help="online: ask this witness (its https://…/seals URL) whether it holds each seal")] = None,
           json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """离线验证证据包 / Verify an evidence package: signature, every file's hash, that the
    signer is the lab (a key given with --public-key or listed by --keys; never the package's own),
    and each segment's inclusion proof against the signed hourly seal it carries.
    Exit 0 only when genuine."""
    try:
        rep = verify_package(package, public_key.read_bytes() if public_key else None)
        if keys is not None:
            apply_key_list(rep, load_key_list(keys))
    except LabwitnessError as e:
        fail(e)
    for key_id in rep.seal_keys_pending:  # not judged by a key list: not shown to be the lab's
        rep.problems.append(f"封印由另一密钥 {key_id} 签署，请用 --keys 提供实验室公钥列表 / a seal is signed by another key "
                            f"({key_id}): give the lab's key list with --keys")
    witnessed = {seq: witness_holds(witness, seq, s["head"]) for seq, s in rep.seals.items()} if witness else {}
    unknown_issuer = rep.ok and rep.trusted_key is None
    if json_out:
        print_json({"genuine": rep.genuine, "ok": rep.ok, "signature_valid": rep.signature_valid,
                    "key_fingerprint": rep.key_fingerprint, "trusted_key": rep.trusted_key,
                    "issuer": "lab" if rep.genuine else ("unknown" if unknown_issuer else "not verified"),
                    "files": rep.files, "problems": rep.problems, "sealing": rep.sealing,
                    "seals": {seq: {k: v for k, v in s.items() if k != "head"} for seq, s in rep.seals.items()},
                    "witness": witnessed,
                    "report_no": rep.manifest.get("report_no"), "package_id": rep.manifest.get("package_id")})
    else:
        head = ("[green]真实有效 / genuine[/]" if rep.genuine else
                "[yellow]签发者未知：完整但未确认由实验室签发 / issuer unknown: intact, but not shown to be the lab's[/]"
                if unknown_issuer else "[red]验证失败 / NOT genuine[/]")
        console.print(f"{head} — report {rep.manifest.get('report_no')} · key {rep.key_fingerprint}")
        for name, state in sorted(rep.files.items()):
            console.print(f"  {'✓' if state == 'ok' else '✗'} {name}: {state}  {_sealing_line(rep.sealing.get(name))}")
        for seq, state in sorted(witnessed.items()):
            console.print(f"  见证 / witness: seal {seq}: {WITNESS_STATES.get(state, state)}")
        for p in rep.problems:
            console.print(f"  [red]{p}[/]")
        if unknown_issuer:
            console.print("  请用 --public-key 指定实验室公钥，或用 --keys 指定实验室公布的公钥列表 / give the lab's key "
                          "with --public-key, or its published key list with --keys (`labwitness key export`, "
                          "/.well-known/labwitness-keys.json)")
    raise typer.Exit(0 if rep.genuine else 1)


WITNESS_STATES = {"held": "见证方持有此封印 / the witness holds this seal",
                  "missing": "见证方没有此封印 / the witness does not hold this seal",
                  "different": "见证方持有的封印与此不同 / the witness holds a DIFFERENT seal under this id"}


def _sealing_line(s: dict | None) -> str:
    """One file's seal state: which seals, when; or not yet sealed."""
    if not s:
        return ""
    when = ", ".join(f"seal {x['seq']} @ {x['sealed_at']}" for x in s["seals"])
    return {"sealed": f"已封印 / sealed ({when})",
            "partly_sealed": f"部分已封印 / partly sealed ({when}; {s['unsealed_sources']} segments not yet)",
            "not_yet_sealed": "尚未封印 / not yet sealed",
            "invalid": "封印证明无效 / seal proof INVALID"}.get(s["status"], s["status"])
