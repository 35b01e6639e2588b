"""The narrow dependencies of routes and web views, defined once.

A route names what it uses (``registry: RegistryDep``, ``audit: AuditDep``), never
the whole runtime: each comes from the :class:`~api.runtime.Runtime` the app's
lifespan put on ``app.state.runtime``.  The functions themselves also serve code
that holds only the request (the auth dependency, the rate limiter, the web UI's
session check).
"""

from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from index.audit import AuditLog
from index.queries import IndexStore
from index.records import RecordStore
from index.registry import Registry
from index.tokens import TokenStore
from labwitness.clock import Clock
from recorder.spool_view import SpoolReader
from retention.policy import RetentionPolicy
from storage.base import Body, ObjectStore

from api.camera_time import CameraClocks
from api.exporter import Exporter
from api.health import Health
from api.registry_admin import RegistryAdmin
from api.runtime import Runtime
from api.settings import Settings


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def settings(request: Request) -> Settings:
    return runtime(request).settings


def clock(request: Request) -> Clock:
    return runtime(request).clock


def policy(request: Request) -> RetentionPolicy:
    return runtime(request).policy


def store(request: Request) -> ObjectStore:
    return runtime(request).store


def index(request: Request) -> IndexStore:
    return runtime(request).index


def registry(request: Request) -> Registry:
    return runtime(request).registry


def records(request: Request) -> RecordStore:
    return runtime(request).records


def tokens(request: Request) -> TokenStore:
    return runtime(request).tokens


def audit(request: Request) -> AuditLog:
    return runtime(request).audit


def spool(request: Request) -> SpoolReader:
    return runtime(request).spool_view


def exporter(request: Request) -> Exporter:
    return runtime(request).exporter


def registry_admin(request: Request) -> RegistryAdmin:
    return runtime(request).registry_admin


def camera_clocks(request: Request) -> CameraClocks:
    rt = runtime(request)
    return CameraClocks(rt.registry, rt.audit, rt.cipher, rt.clock)


def health(request: Request) -> Health:
    return runtime(request).health


def metrics(request: Request) -> CollectorRegistry:
    return runtime(request).metrics.registry


SettingsDep = Annotated[Settings, Depends(settings)]
ClockDep = Annotated[Clock, Depends(clock)]
PolicyDep = Annotated[RetentionPolicy, Depends(policy)]
StoreDep = Annotated[ObjectStore, Depends(store)]
IndexDep = Annotated[IndexStore, Depends(index)]
RegistryDep = Annotated[Registry, Depends(registry)]
RecordsDep = Annotated[RecordStore, Depends(records)]
TokensDep = Annotated[TokenStore, Depends(tokens)]
AuditDep = Annotated[AuditLog, Depends(audit)]
SpoolDep = Annotated[SpoolReader, Depends(spool)]
ExporterDep = Annotated[Exporter, Depends(exporter)]
RegistryAdminDep = Annotated[RegistryAdmin, Depends(registry_admin)]
CameraClocksDep = Annotated[CameraClocks, Depends(camera_clocks)]
HealthDep = Annotated[Health, Depends(health)]
MetricsDep = Annotated[CollectorRegistry, Depends(metrics)]


def object_stream(body: Body, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """A stored body as a response's chunks; its connection goes back however the response ends."""
    with body:
        yield from body.stream(chunk)
