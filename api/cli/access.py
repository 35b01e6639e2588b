"""Who may act and what they did: ``token`` (API tokens) and ``audit`` (the hash-chained log)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from api.cli.common import actor, console, fail, index_only, print_json, settings_or_exit, table
from labwitness.errors import LabwitnessError

token_app = typer.Typer(help="API 令牌 / API tokens", no_args_is_help=True)
audit_app = typer.Typer(help="审计日志 / audit log", no_args_is_help=True)


@token_app.command("create")
def token_create(name: Annotated[str, typer.Option()], role: Annotated[str, typer.Option(help="admin | inspector | operations | ingest")],
                 json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """创建 API 令牌（只显示一次） / Create an API token (shown once)."""
    try:
        with index_only(settings_or_exit()) as ix:
            row, token = ix.tokens.create(name, role, actor())
            ix.audit.append(actor(), "token.create", f"token:{row.id}", {"name": name, "role": role}, "admin")
    except LabwitnessError as e:  # an unknown role is a ValidationError: exit 2
        fail(e)
    print_json({"id": row.id, "name": row.name, "role": row.role, "token": token}) if json_out else print(token)


@token_app.command("list")
def token_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    with index_only(settings_or_exit()) as ix:
        rows = [{"id": t.id, "name": t.name, "role": t.role, "prefix": t.prefix, "revoked": t.revoked_ms is not None}
                for t in ix.tokens.list()]
    print_json(rows) if json_out else table("令牌 / tokens", ["id", "name", "role", "prefix", "revoked"],
                                             [list(r.values()) for r in rows])


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument()]) -> None:
    """吊销令牌 / Revoke a token."""
    try:
        with index_only(settings_or_exit()) as ix:
            t = ix.tokens.revoke(token_id)
            ix.audit.append(actor(), "token.revoke", f"token:{token_id}", {"name": t.name}, "admin")
    except LabwitnessError as e:
        fail(e)


@audit_app.command("verify")
def audit_verify(expected_head: Annotated[Optional[str], typer.Option(help="the last hash you kept, to catch a cut tail")] = None,
                 json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """校验审计日志哈希链 / Verify the audit log's hash chain; exit 1 if anything was altered or removed."""
    with index_only(settings_or_exit()) as ix:
        rep = ix.audit.verify(expected_head)
    if json_out:
        print_json(rep.__dict__)
    elif rep.ok:
        console.print(f"[green]审计日志完整 / audit log intact[/]: {rep.events} events, head {rep.head}")
        if rep.unkeyed:
            console.print(f"  {rep.unkeyed} 条事件早于审计密钥，无签名 / events written before the audit key existed "
                          "(no MAC: checked by hash chain only)")
    else:
        console.print(f"[red]审计日志被篡改 / audit log tampered[/]: event {rep.broken_at}: {rep.reason}")
    raise typer.Exit(0 if rep.ok else 1)
