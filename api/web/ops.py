"""Operations pages: the retention health dashboard (``api.health.Health``)
and links to the monthly compliance report (``GET /api/v1/compliance``).
Facts only: no footage, no segment links, no credentials."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from labwitness.clock import Clock

from api.deps import ClockDep, HealthDep, SettingsDep
from api.web.render import render
from api.web.session import WebUser, page

router = APIRouter(include_in_schema=False)
OpsUser = Annotated[WebUser, Depends(page("operations"))]
WINDOWS = ("24h", "7d", "183d")


@router.get("/ui/health", response_class=HTMLResponse)
def health(request: Request, user: OpsUser, monitor: HealthDep, clock: ClockDep, settings: SettingsDep) -> Response:
    rep = monitor.report()
    cams = [{"id": cid, **d} for cid, d in sorted(rep["cameras"].items())]
    verify = rep["jobs"].get("verify")
    return render(request, "health.html", user=user, rep=rep, cameras=cams, windows=WINDOWS,
                  areas=sorted(rep["areas"].items()), jobs=sorted(rep["jobs"].items()), verify=verify,
                  months=recent_months(clock, settings.timezone, 3))


def recent_months(clock: Clock, timezone: str, n: int) -> list[str]:
    """The current calendar month (lab time zone) and the ``n - 1`` before it, as YYYY-MM."""
    now = clock.now().astimezone(ZoneInfo(timezone))
    y, m = now.year, now.month
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out


@router.get("/ui/compliance", response_class=HTMLResponse)
def compliance(request: Request, user: OpsUser, clock: ClockDep, settings: SettingsDep) -> Response:
    return render(request, "compliance.html", user=user, months=recent_months(clock, settings.timezone, 12))
