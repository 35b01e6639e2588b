"""The API layer's wiring, checked without starting anything: routes and web views name
the few parts of the runtime they use (api.deps), settings hold one definition of
each default, and the index URL is the index's own."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest
from fastapi.routing import APIRoute

from api.app import create_app
from api.runtime import Runtime
from api.settings import Settings, load_settings
from index.db import sqlite_url
from retention.policy import RetentionPolicy
from retention.runs import JobsConfig


def _takes_runtime(hint) -> bool:
    if hint is Runtime:
        return True
    return any(_takes_runtime(a) for a in typing.get_args(hint))


def _endpoints(routes) -> list:
    out = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r.endpoint)
        sub = getattr(r, "original_router", None) or getattr(r, "router", None)  # an included router
        if sub is not None and sub is not r:
            out += _endpoints(sub.routes)
    return out


def test_no_route_or_page_takes_the_whole_runtime(tmp_path):
    app = create_app(load_settings(data_dir=tmp_path / "data"))
    endpoints = _endpoints(app.routes)
    assert len(endpoints) > 40
    whole = [f"{e.__module__}.{e.__name__}" for e in endpoints
             if any(_takes_runtime(h) for h in typing.get_type_hints(e, include_extras=True).values())]
    assert not whole, f"routes that take the whole runtime (use api.deps): {whole}"


def test_settings_defaults_are_the_jobs_and_the_policy_defaults():
    s = Settings()
    cfg = s.jobs_config()
    assert cfg == JobsConfig()  # nothing repeated with another value
    assert (s.retention_months, s.retention_margin_days) == (RetentionPolicy.months, RetentionPolicy.margin_days)
    named = {f.name for f in fields(JobsConfig)} & set(Settings.model_fields)
    assert named >= {"sweep_interval_h", "verify_sample", "integrity_budget_bytes", "content_sample_seconds",
                     "retention_months"}


@pytest.mark.parametrize("key, value", [("sweep_interval_h", 2.5), ("verify_sample", 7), ("retention_months", 9),
                                        ("content_interval_h", 0.0), ("integrity_budget_objects", 3)])
def test_jobs_config_carries_each_setting(key, value):
    assert getattr(Settings(**{key: value}).jobs_config(), key) == value


def test_db_url_defaults_to_the_index_sqlite_file(tmp_path):
    assert Settings(data_dir=tmp_path).db_url == sqlite_url(tmp_path / "index.sqlite3")
    assert Settings(data_dir=tmp_path, database_url="postgresql://x/y").db_url == "postgresql://x/y"
