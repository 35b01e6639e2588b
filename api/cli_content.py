"""CLI commands of content health (kept apart from ``api.cli`` so they can be wired in one line):

    labwitness retention content [--camera ID] [--json]
    labwitness camera approve-reference ID [--json]

``register(app)`` adds them to the root Typer app: into its ``retention`` and
``camera`` groups when they exist (call it after ``api.cli`` added its groups),
creating a group that is missing.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from labwitness.errors import LabwitnessError


def _group(app: typer.Typer, name: str, help: str) -> typer.Typer:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def content(camera: Annotated[Optional[str], typer.Option("--camera", help="only this camera")] = None,
            json_out: Annotated[bool, typer.Option("--json", help="print the run summary as JSON")] = False) -> None:
    """画面健康检查 / Sample new footage (one keyframe per LABWITNESS_CONTENT_SAMPLE_SECONDS) for blackout,
    frozen picture, covered/defocused lens and moved camera.  Exit 0 ok, 1 unusable picture or unreadable
    footage found, 3 refused (a content check is already running), 4 could not run (as the other retention
    commands)."""
    from api.cli import _actor, _print_json, _settings, _table, console
    from api.cli_exit import COULD_NOT_RUN, REFUSED, fail
    from api.runtime import Runtime
    from labwitness.clock import from_ms
    from retention.content_detect import ContentConfig
    from retention.content_job import ContentJobConfig, run_content_check

    settings = _settings()
    try:
        with Runtime(settings, recording=False) as rt:
            cfg = ContentJobConfig(content=ContentConfig(sample_seconds=settings.content_sample_seconds))
            summary = run_content_check(rt.index, rt.store, rt.clock, cfg, camera_id=camera, actor=_actor())
    except LabwitnessError as e:
        if json_out:
            _print_json({"job": "content", "status": "failed", "error": str(e)})
        fail(e, failed=COULD_NOT_RUN)
    if json_out:
        _print_json(summary.to_json())
    else:
        tz = settings.timezone
        try:
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(tz)
        except Exception:  # an unknown zone name only changes how times are shown
            zone = None

        def show(ms: int) -> str:
            dt = from_ms(ms)
            return (dt.astimezone(zone) if zone else dt).strftime("%Y-%m-%d %H:%M:%S")

        console.print(f"content check: {summary.status} ({summary.cpu_s:.2f} CPU s)")
        if summary.message:
            console.print(f"  {summary.message}")
        _table("画面健康 / content health", ["camera", "segments", "samples", "sampled until", "unusable now", "error"],
               [[cid, r.segments, r.samples, show(r.sampled_until_ms) if r.sampled_until_ms else "",
                 ", ".join(r.ongoing), r.error] for cid, r in summary.cameras.items()])
    raise typer.Exit({"ok": 0, "warning": 1, "refused": REFUSED}.get(summary.status, COULD_NOT_RUN))


def approve_reference(id: Annotated[str, typer.Argument(help="camera id")],
                      json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """批准参考画面 / Approve the camera's latest sampled picture as the reference frame that
    "moved camera" is judged against (audited)."""
    from api.cli import _actor, _fail, _print_json, _settings, console
    from api.runtime import index_only
    from labwitness.clock import SystemClock, utc_ms
    from retention.content_index import approve_reference as approve

    try:
        with index_only(_settings()) as ix:
            row = approve(ix.registry.engine, id, _actor(), utc_ms(SystemClock().now()), audit=ix.audit)
    except LabwitnessError as e:
        _fail(e)
    if json_out:
        _print_json({"camera_id": id, "approved_ms": row.reference_approved_ms, "approved_by": row.reference_approved_by,
                     "sample_ms": row.last_sample_ms, "bytes": len(row.reference_jpeg or b"")})
    else:
        console.print(f"已批准参考画面 / reference approved for {id} (sample of {row.last_sample_ms} ms)")


def register(app: typer.Typer) -> None:
    """Add ``retention content`` and ``camera approve-reference`` to the root app."""
    _group(app, "retention", "留存任务 / retention jobs").command("content")(content)
    _group(app, "camera", "摄像机 / cameras").command("approve-reference")(approve_reference)
