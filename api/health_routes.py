"""REST for operations: recording and retention health, and the Prometheus metrics
(the recorder's own and health's gauges, :class:`api.health.HealthCollector`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import Operations
from api.deps import HealthDep, MetricsDep

router = APIRouter()
RETENTION_KEYS = ("status", "problems", "alerts", "checked_at", "storage", "retention", "integrity", "jobs", "witnesses",
                  "areas", "cameras")


# The report is plain JSON already (str, numbers, lists, dicts): it is sent as it is.  FastAPI's
# jsonable_encoder walking it again took 430 ms for 256 cameras, longer than gathering it
# (bench/index_scale, "GET /api/v1/health"); the bytes are the same.
@router.get("/api/v1/health")
def health(monitor: HealthDep, who: Operations) -> dict:
    """Recording and retention health (same report as ``labwitness health --json``)."""
    return JSONResponse(monitor.report())


@router.get("/api/v1/health/retention")
def health_retention(monitor: HealthDep, who: Operations) -> dict:
    """Retention health: coverage 24 h / 7 d / 183 d, gaps, oldest footage, runway,
    integrity findings, lock verification and the retention jobs' last runs."""
    rep = monitor.report()
    return JSONResponse({k: rep[k] for k in RETENTION_KEYS})


@router.get("/metrics", include_in_schema=False)
def metrics(registry: MetricsDep, who: Operations) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
