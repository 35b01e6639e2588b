"""Picture health from the command line: ``retention content`` (the content check)
and ``camera approve-reference`` (the "not moved" reference frame).

The root app puts them into the ``retention`` and ``camera`` groups (:mod:`api.cli`).
"""

from __future__ import annotations

from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer

from api.cli.common import (
    COULD_NOT_RUN, REFUSED, actor, console, fail, index_only, print_json, runtime, settings_or_exit, table,
)
from labwitness.clock import SystemClock, from_ms, utc_ms
from labwitness.errors import LabwitnessError


def content(camera: Annotated[Optional[str], typer.Option("--camera", help="only this camera")] = None,
            json_out: Annotated[bool, typer.Option("--json", help="print the run summary as JSON")] = False) -> None:
    """画面健康检查 / Sample new footage (one keyframe per LABWITNESS_CONTENT_SAMPLE_SECONDS) for blackout,
    frozen picture, covered/defocused lens and moved camera.  Exit 0 ok, 1 unusable picture or unreadable
    footage found, 3 refused (a content check is already running), 4 could not run (as the other retention
    commands)."""
    # heavy: the content check decodes with av and judges with cv2; keeps --help fast
    from retention.content_detect import ContentConfig
    from retention.content_job import ContentJobConfig, run_content_check

    settings = settings_or_exit()
    try:
        with runtime(settings, recording=False) as rt:
            cfg = ContentJobConfig(content=ContentConfig(sample_seconds=settings.content_sample_seconds))
            summary = run_content_check(rt.index, rt.store, rt.clock, cfg, camera_id=camera, actor=actor(),
                                        samples=rt.samples)
    except LabwitnessError as e:
        if json_out:
            print_json({"job": "content", "status": "failed", "error": str(e)})
        fail(e, failed=COULD_NOT_RUN)
    if json_out:
        print_json(summary.to_json())
    else:
        try:
            zone = ZoneInfo(settings.timezone)
        except Exception:  # an unknown zone name only changes how times are shown
            zone = None

        def show(ms: int) -> str:
            dt = from_ms(ms)
            return (dt.astimezone(zone) if zone else dt).strftime("%Y-%m-%d %H:%M:%S")

        console.print(f"content check: {summary.status} ({summary.cpu_s:.2f} CPU s)")
        if summary.message:
            console.print(f"  {summary.message}")
        table("画面健康 / content health", ["camera", "segments", "samples", "sampled until", "unusable now", "error"],
              [[cid, r.segments, r.samples, show(r.sampled_until_ms) if r.sampled_until_ms else "",
                ", ".join(r.ongoing), r.error] for cid, r in summary.cameras.items()])
    raise typer.Exit({"ok": 0, "warning": 1, "refused": REFUSED}.get(summary.status, COULD_NOT_RUN))


def approve_reference(id: Annotated[str, typer.Argument(help="camera id")],
                      json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """批准参考画面 / Approve the camera's latest sampled picture as the reference frame that
    "moved camera" is judged against (audited)."""
    from retention.content_index import approve_reference as approve  # heavy: cv2 (the reference frame); keeps --help fast

    try:
        with index_only(settings_or_exit()) as ix:
            row = approve(ix.registry.engine, id, actor(), utc_ms(SystemClock().now()), audit=ix.audit)
    except LabwitnessError as e:
        fail(e)
    if json_out:
        print_json({"camera_id": id, "approved_ms": row.reference_approved_ms, "approved_by": row.reference_approved_by,
                    "sample_ms": row.last_sample_ms, "bytes": len(row.reference_jpeg or b"")})
    else:
        console.print(f"已批准参考画面 / reference approved for {id} (sample of {row.last_sample_ms} ms)")
