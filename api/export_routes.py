"""Evidence exports, their download, the public verify endpoint, and hold release."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from index.models import ExportPackage
from labwitness.errors import ConflictError, NotFoundError
from labwitness.ids import Number

from api.auth import Admin, Inspector
from api.deps import AuditDep, ExporterDep, StoreDep, object_stream
from api.evidence import new_package_id, signature_ok
from api.exporter import package_file_name
from api.rate_limit import VERIFY, RateLimitedError, admit
from api.web.pages import too_many_page, verify_html

router = APIRouter()


class ExportWarning(BaseModel):
    """What the package cannot vouch for (api.export_checks): window_not_over, low_coverage, no_footage."""

    code: str
    message: str
    camera_id: str | None = None


class ExportView(BaseModel):
    id: str
    report_no: str
    #: running (queued or being built) | done | failed: what clients poll on, as before the queue
    status: str
    #: queued | running | done | failed: the queue's own state (docs/jobs.md)
    state: str
    #: the export worker building it (node/pid/n), and how many claims it took (a retry after a worker died: > 1)
    worker: str
    attempts: int
    progress: float
    error: str
    status_url: str
    download_url: str | None
    verify_url: str
    package_sha256: str | None
    warnings: list[ExportWarning]


def export_view(pkg: ExportPackage) -> ExportView:
    return ExportView(id=pkg.id, report_no=pkg.report_no, status="running" if pkg.status == "queued" else pkg.status,
                      state=pkg.status, worker=pkg.claimed_by, attempts=pkg.attempts, progress=pkg.progress, error=pkg.error,
                      status_url=f"/api/v1/exports/{pkg.id}",
                      download_url=f"/api/v1/exports/{pkg.id}/download" if pkg.status == "done" else None,
                      verify_url=f"/verify/{pkg.id}", package_sha256=pkg.package_sha256 or None,
                      warnings=json.loads(pkg.warnings or "[]"))


# the report no. may hold '/': the path parameter takes it whole (encoded or not)
@router.post("/api/v1/reports/{report_no:path}/exports", status_code=202)
def start_export(exporter: ExporterDep, who: Inspector, report_no: Annotated[Number, Path()]) -> ExportView:
    return export_view(exporter.start(report_no, who.actor, who.role, new_package_id()))


@router.get("/api/v1/exports/{package_id}")
def export_status(exporter: ExporterDep, who: Inspector, package_id: str) -> ExportView:
    return export_view(exporter.get(package_id))


@router.get("/api/v1/exports/{package_id}/download", responses={200: {"content": {"application/zip": {}}}})
def download(exporter: ExporterDep, store: StoreDep, audit: AuditDep, who: Inspector, package_id: str) -> StreamingResponse:
    pkg = exporter.get(package_id)
    if pkg.status != "done":
        raise NotFoundError(f"证据包尚未完成 / package {package_id} is {pkg.status}")
    # audited before a byte is read: an audit log that cannot write stops the download
    audit.append(who.actor, "export.download", pkg.report_no, {"package_id": package_id}, who.role)
    body = store.open(pkg.package_key, pkg.package_version_id)
    return StreamingResponse(object_stream(body), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{package_file_name(pkg.report_no, pkg.id)}"', "ETag": f'"{pkg.package_sha256}"'})


@router.get("/verify/{package_id}", tags=["public"])
def verify(exporter: ExporterDep, store: StoreDep, audit: AuditDep, request: Request, package_id: str):
    """Public anti-counterfeit check (no token): is this package genuine, and what does it hold?
    Facts only, never footage.  Limited per source address (api.rate_limit): a flood
    gets 429 and one counted ``verify.flood`` audit row per window."""
    try:
        admit(request, VERIFY)
    except RateLimitedError as e:
        if "text/html" in request.headers.get("accept", ""):
            return too_many_page(request, e.retry_after_s)
        raise
    try:
        pkg = exporter.get(package_id)
    except NotFoundError:
        pkg = None
    facts: dict = {"package_id": package_id, "genuine": False}
    if pkg is not None and pkg.status == "done":
        manifest = json.loads(pkg.manifest)
        sig_ok = signature_ok(exporter.key.public, pkg.manifest.encode(), pkg.signature)
        stored_ok = False
        try:
            obj, user = store.stat(pkg.package_key, pkg.package_version_id)
            stored_ok = obj.size > 0 and {k.lower(): v for k, v in user.items()}.get("x-amz-meta-lw-sha256") == pkg.package_sha256
        except Exception:  # storage unreachable: say so rather than vouch
            facts["warning"] = "存储暂不可达，未能核对原件 / storage unreachable: the stored original was not re-checked"
        facts.update({
            "genuine": sig_ok and stored_ok, "signature_valid": sig_ok, "stored_original_intact": stored_ok,
            "report_no": pkg.report_no, "created_at": manifest["created_at"], "exporter": manifest["exporter"],
            "signing_key": manifest["signing_key"], "package_sha256": pkg.package_sha256,
            "test_records": [{k: r[k] for k in ("record_id", "revision", "report_no", "commission_no", "test_item",
                                                 "started_at", "ended_at")} for r in manifest["test_records"]],
            "files": [{"name": f["name"], "sha256": f["sha256"], "camera_id": f["camera_id"], "window": f["window"]}
                      for f in manifest["files"]],
        })
    who = f"public@{request.client.host if request.client else '?'}"
    audit.append(who, "export.verify", package_id, {"genuine": facts["genuine"]}, "public")
    if "text/html" in request.headers.get("accept", ""):  # a browser (e.g. the QR code scanned): the web UI's page
        return verify_html(request, facts, 200 if pkg else 404)
    if pkg is None:
        raise NotFoundError(f"证据包不存在（可能是伪造的） / no such evidence package (it may be counterfeit): {package_id}")
    return facts


@router.post("/api/v1/exports/{package_id}/release-hold")
def release_hold(exporter: ExporterDep, audit: AuditDep, who: Admin, package_id: str) -> dict:
    """Release the legal holds this package placed (audited). Versions another package
    still relies on stay held; retention itself is never shortened."""
    pkg = exporter.get(package_id)
    if pkg.status in ("queued", "running"):
        raise ConflictError(f"证据包仍在导出中，完成或失败后再释放 / package {package_id} is still being exported; "
                            "release its holds once it is done or failed")
    released = exporter.release(pkg, who.actor)
    audit.append(who.actor, "hold.release", pkg.report_no, {"package_id": package_id, "holds": released}, who.role)
    return {"package_id": package_id, "released": released}
