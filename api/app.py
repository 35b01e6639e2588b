"""FastAPI app factory: ``create_app(settings)``; nothing happens at import."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI, Request

from labwitness.errors import LabwitnessError

from api import (admin_routes, compliance_routes, docs_routes, export_routes, footage_routes, health_routes, keys_routes,
                 problems, records_routes, registry_routes, web)
from api.exporter import Exporter
from api.rate_limit import SourceLimiter, write_floods
from api.runtime import Runtime
from api.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: no single request needs more
MAX_BATCH_BODY = 8 << 20  # up to 1000 test records


def _recover_exports(exporter: Exporter) -> None:
    try:
        released = exporter.recover()
    except LabwitnessError as e:  # storage or index down: the next run tries again
        log.warning("export recovery could not run: %s", e)
        return
    if released:
        log.info("released the legal holds of %d failed or interrupted export(s): %s", len(released), ", ".join(released))


def create_app(settings: Settings, runtime: Runtime | None = None, *, sync_interval_s: float = 5.0) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = runtime is None
        rt = runtime or Runtime(settings)
        if owned:
            rt.__enter__()
        app.state.runtime = rt
        limiter = app.state.limiter = SourceLimiter(rt.clock)
        sched = BackgroundScheduler(timezone="UTC")
        sched.add_job(rt.sync_cameras, "interval", seconds=sync_interval_s, id="sync-cameras",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        # a flood's summary row is due when its window ends, even if that source stays quiet
        sched.add_job(write_floods, "interval", args=(limiter, rt.audit), seconds=15, id="audit-floods",
                      max_instances=1, coalesce=True)
        # holds of an export that failed or whose process died are released without waiting for the next
        # export to start (docs/exports.md, "recovery"); first run at start-up
        sched.add_job(_recover_exports, "interval", args=(rt.exporter,), minutes=10, id="export-recovery",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        sched.start()
        try:
            yield
        finally:
            sched.shutdown(wait=False)
            try:
                write_floods(limiter, rt.audit, final=True)  # counted refusals are not lost at shutdown
            except LabwitnessError:
                log.exception("could not write the rate limiter's flood summaries to the audit log")
            if owned:
                rt.__exit__(None, None, None)

    app = FastAPI(title="labwitness", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="实验室检测区域视频留存与索引 / Lab testing-area video retention and indexing")
    problems.install(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> dict:
        """Liveness for a load balancer or systemd, every node, no token: the node and its roles (no camera,
        no footage).  "starting" until the runtime is up."""
        rt = getattr(request.app.state, "runtime", None)
        lm = getattr(rt, "lease_manager", None)
        return {"status": "ok" if rt is not None else "starting", "node_id": settings.node_id,
                "roles": sorted(settings.role_set), "leases_held": len(lm.held) if lm is not None else None}

    if "api" not in settings.role_set:  # a recorder or jobs node: liveness and metrics only (docs/cluster.md)
        app.add_api_route("/metrics", health_routes.metrics, include_in_schema=False)
        return app
    docs_routes.install(app)  # /docs from vendored Swagger UI (no CDN), /favicon.ico

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """Refuse oversized requests before reading them (the batch endpoint gets more room)."""
        limit = MAX_BATCH_BODY if request.url.path.endswith("/batch") else MAX_BODY
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return problems.problem(413, "请求体过大 / request body too large", f"at most {limit} bytes")
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return problems.problem(413, "请求体过大 / request body too large", f"at most {limit} bytes")
            request._body = body  # starlette re-reads the cached body
        return await call_next(request)

    for module in (registry_routes, admin_routes, records_routes, export_routes, compliance_routes, keys_routes,
                   health_routes, footage_routes):
        app.include_router(module.router)
    # the web UI: pages, /static, sign-in sessions, the public status page at "/"
    web.install(app)
    return app
