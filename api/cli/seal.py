"""Seals from the command line (retention.seals, retention.seal_verify):

    labwitness seal now [--json]                    # write a seal now (as the hourly job does)
    labwitness seal verify [--since ISO] [--json]   # recompute the seals from storage, name what differs

``seal verify`` answers like the other check commands: 0 nothing found, 2 findings
(a segment missing or altered, a seal missing or forged, an hour never sealed, an
audit rewrite), 4 when the check could not run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from api.cli.common import COULD_NOT_RUN, actor, console, fail, print_json, runtime, settings_or_exit, setup_logging
from api.keyring import published_keys
from index.seals import SealStore
from labwitness.clock import utc_ms
from labwitness.errors import LabwitnessError, ValidationError
from retention.seal_verify import VerifyInput, verify_seals

seal_app = typer.Typer(help="封印：每小时签名的默克尔根 / seals: hourly signed Merkle roots of the footage",
                       no_args_is_help=True)

KIND_NAMES = {
    "segment_missing": "录像片段缺失 / segment missing", "segment_altered": "录像片段被改动 / segment altered",
    "segment_unreadable": "录像片段无法读取 / segment unreadable",
    "segment_unsealed": "录像未被封印 / segment in no seal", "hour_unsealed": "该小时未封印 / hour never sealed",
    "seal_missing": "封印缺失 / seal missing", "seal_invalid": "封印无效 / seal invalid",
    "seal_unreadable": "封印无法读取 / seal unreadable", "seal_chain_broken": "封印链断裂 / seal chain broken",
    "seal_untrusted_key": "封印密钥不受信任 / seal signed by an unknown key",
    "audit_rewritten": "审计日志被改写 / audit log rewritten", "audit_event_missing": "审计事件缺失 / audit event missing",
}


def _since(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"--since 不是 ISO 时间 / --since is not an ISO 8601 time: {text}") from None
    return utc_ms(t if t.tzinfo else t.replace(tzinfo=timezone.utc))


def spooled_keys(documents_root: Path) -> frozenset[str]:
    """Object keys still waiting in the local document spool (storage.doc_spool's commit records)."""
    keys = set()
    for rec in documents_root.glob("*.json"):
        try:
            keys.add(json.loads(rec.read_text())["key"])
        except (OSError, ValueError, KeyError):
            continue
    return frozenset(keys)


@seal_app.command("now")
def seal_now(json_out: Annotated[bool, typer.Option("--json")] = False,
             verbose: Annotated[bool, typer.Option("-v")] = False) -> None:
    """立即写一个封印 / Write a seal now (the hourly job's run): everything indexed since the last seal."""
    setup_logging(verbose)
    settings = settings_or_exit()
    try:
        with runtime(settings, recording=False) as rt:
            res = rt.run_seal(actor=actor())
            rt.documents.upload_once(limit=10_000)  # storage down: the seal stays in the spool for `serve`
    except LabwitnessError as e:
        fail(e)
    if json_out:
        print_json(res.to_json())
    else:
        for s in res.summary.get("seals", []):
            console.print(f"封印 / seal {s['seq']}: {s['segments']} segments, {s['gaps']} gaps · root {s['root']} · {s['key']}")
    raise typer.Exit(0 if res.status == "ok" else 3 if res.status == "refused" else 1)


@seal_app.command("verify")
def seal_verify(since: Annotated[Optional[str], typer.Option(help="check seals created since (ISO 8601); default all")] = None,
                workers: Annotated[int, typer.Option(help="footage versions hashed in parallel")] = 4,
                json_out: Annotated[bool, typer.Option("--json")] = False,
                verbose: Annotated[bool, typer.Option("-v")] = False) -> None:
    """从存储重新计算封印 / Recompute the seals from storage: every sealed segment's bytes, the
    seals' signatures and chain, unsealed hours and footage, and the audit head each seal anchored.
    Exit 0 nothing found, 2 findings, 4 could not run."""
    setup_logging(verbose)
    settings = settings_or_exit()
    try:
        since_ms = _since(since)
        with runtime(settings, recording=False) as rt:
            now_ms = rt.now_ms()
            inp = VerifyInput(
                since_ms=since_ms, now_ms=now_ms, interval_h=settings.seal_interval_h, grace_min=settings.seal_grace_min,
                trusted_keys=frozenset(k["key_id"] for k in published_keys(settings.data_dir)),
                recorded=[(s.seq, s.object_key) for s in SealStore(rt.index.engine).since(since_ms or 0)],
                spooled_keys=spooled_keys(rt.documents.root), audit_hash_at=rt.audit.hash_at,
                expired=lambda end_ms: utc_ms(rt.policy(datetime.fromtimestamp(end_ms / 1000, timezone.utc))) <= now_ms,
                workers=workers)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=console, disable=json_out) as bar:
                task = bar.add_task("校验录像 / hashing sealed footage", total=None)
                rep = verify_seals(rt.store, inp, progress=lambda done, total: bar.update(task, completed=done, total=total))
    except LabwitnessError as e:
        if json_out:
            print_json({"ok": False, "error": str(e)})
        fail(e, failed=COULD_NOT_RUN)
    if json_out:
        print_json(rep.to_json())
    else:
        head = "[green]封印一致 / seals verified[/]" if rep.ok else f"[red]发现 {len(rep.findings)} 项问题 / {len(rep.findings)} findings[/]"
        console.print(f"{head} — {len(rep.seals)} seals, {rep.segments_checked} segments hashed "
                      f"({rep.segments_expired} expired), {rep.hours_checked} hours")
        for f in rep.findings:
            where = " ".join(f"{k}={f[k]}" for k in ("seq", "camera_id", "version_id") if f.get(k) is not None)
            console.print(f"  ✗ {KIND_NAMES.get(f['kind'], f['kind'])}: {f['detail']} {where}", highlight=False)
        for n in rep.notes:
            console.print(f"  · {n}", highlight=False)
    raise typer.Exit(0 if rep.ok else 2)
