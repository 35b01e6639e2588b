"""One ingest for test records (api.ingest): ``labwitness records import`` and the REST API's
``PUT /test-records/{id}`` give the same row, revision and audit action, and refuse the
same records for the same reason."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from api.cli import app as cli_app
from index.records import record_content
from labwitness.errors import NotFoundError
from labwitness.ids import number_problem

from webtools import web_runtime

RECORD = {"report_no": "JC-I-0001", "commission_no": "WT-I-0001", "project_name": "综合楼, 一期", "test_item": "钢筋拉伸",
          "sample_ids": ["GX-1", "GX-2"], "area_ids": ["lixue"], "equipment_ids": ["UTM-01"], "operator": "张三",
          "started_at": "2026-11-01T08:00:00+08:00", "ended_at": "2026-11-01T08:30:00+08:00"}
START = datetime.fromisoformat(RECORD["started_at"])
COLUMNS = ("record_id", "report_no", "commission_no", "project_name", "test_item", "sample_ids", "area_ids",
           "equipment_ids", "operator", "started_at", "ended_at")


@pytest.fixture
def both(tmp_path, seaweed):
    """(put, import_, rt): the REST PUT and the CLI import of one record into one index."""
    with web_runtime(tmp_path, seaweed) as (client, rt, tokens):
        headers = {"Authorization": f"Bearer {tokens['ingest']}"}

        def put(record_id: str, record: dict):
            return client.put(f"/api/v1/test-records/{quote(record_id, safe='')}", json=record, headers=headers)

        def import_(record_id: str, record: dict) -> dict:
            f = io.StringIO()
            w = csv.writer(f)
            w.writerow(COLUMNS)
            w.writerow([record_id] + [";".join(v) if isinstance(v, list) else v for v in (record[k] for k in COLUMNS[1:])])
            path = tmp_path / "records.csv"
            path.write_text(f.getvalue(), encoding="utf-8")
            r = CliRunner().invoke(cli_app, ["records", "import", str(path), "--json"],
                                   env={"LABWITNESS_DATA_DIR": str(tmp_path / "data")})
            (result,) = json.loads(r.stdout)
            assert r.exit_code == (1 if result["status"] == "error" else 0), r.output
            return result

        yield put, import_, rt


def audit_of(rt, record_id: str) -> list[tuple[str, dict, str]]:
    """(action, detail, role) of the record's audit events, oldest first."""
    return [(e.action, json.loads(e.detail), e.role) for e in reversed(rt.audit.events(1000)) if e.target == record_id]


def test_import_and_put_give_the_same_row_revision_and_audit(both):
    put, import_, rt = both
    changed = {**RECORD, "test_item": "钢筋拉伸（复检）", "sample_ids": ["GX-1"]}
    steps = [(RECORD, 201, "created"), (changed, 200, "updated"), (changed, 200, "unchanged")]
    for record, status, outcome in steps:
        r = put("R-REST", record)
        assert r.status_code == status, r.text
        assert import_("R-CLI", record)["status"] == outcome
        rest, cli = rt.records.get("R-REST"), rt.records.get("R-CLI")
        assert record_content(rest) == record_content(cli)
        assert rest.revision == cli.revision == r.json()["revision"]
        assert [v.after for v in rt.records.revisions("R-REST")] == [v.after for v in rt.records.revisions("R-CLI")]
    assert [(a, d) for a, d, _ in audit_of(rt, "R-REST")] == [(a, d) for a, d, _ in audit_of(rt, "R-CLI")] == [
        ("test_record.create", {"revision": 1, "report_no": "JC-I-0001"}),
        ("test_record.update", {"revision": 2, "report_no": "JC-I-0001"})]  # nothing for the unchanged third
    assert {role for *_, role in audit_of(rt, "R-REST") + audit_of(rt, "R-CLI")} == {"ingest"}


def _rest_reason(body: dict) -> str:
    """The REST refusal as the CLI words it: pydantic's field errors without FastAPI's "body" prefix."""
    if "errors" in body:
        return "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in body["errors"])
    return body["detail"]


@pytest.mark.parametrize("name, changes, needle", [
    ("unknown area and instrument", {"area_ids": ["nowhere"], "equipment_ids": ["UTM-404"]}, "nowhere"),
    ("window too long", {"ended_at": (START + timedelta(hours=73)).isoformat()}, "72"),
    ("ends before it starts", {"ended_at": (START - timedelta(minutes=1)).isoformat()}, "ended_at must be after"),
    ("neither area nor instrument", {"area_ids": [], "equipment_ids": []}, "at least one area_id"),
    ("malformed area id", {"area_ids": ["li xue"]}, "area_ids.0"),
    ("malformed report number", {"report_no": "JC\x01-1"}, "report_no"),
])
def test_a_record_refused_by_one_is_refused_by_the_other_for_the_same_reason(both, name, changes, needle):
    put, import_, rt = both
    record = {**RECORD, **changes}
    r = put("R-BAD", record)
    result = import_("R-BAD", record)
    assert r.status_code == 422 and result["status"] == "error", (r.text, result)
    assert _rest_reason(r.json()) == result["error"]
    assert needle in result["error"]
    with pytest.raises(NotFoundError):
        rt.records.get("R-BAD")
    assert audit_of(rt, "R-BAD") == []


def test_a_malformed_record_id_is_refused_by_both_for_the_same_reason(both):
    put, import_, rt = both
    record_id = "R\x07-1"
    r = put(record_id, RECORD)
    result = import_(record_id, RECORD)
    assert r.status_code == 422 and result["status"] == "error", (r.text, result)
    problem = number_problem(record_id)
    assert problem and problem in r.json()["detail"] and problem in result["error"]
    assert audit_of(rt, record_id) == []
