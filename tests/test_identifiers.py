"""One rule for numbers (report, commission, sample, record), one grammar for entity ids
(camera, area, equipment): written once in labwitness.ids, used by every path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]

#: what real Chinese report numbers look like: full-width brackets, CJK, '/', spaces
REAL_NUMBERS = ["（2026）建检字第0001号", "JC2026-0001/A", "2026-HNT-0001", "JC 2026/0002 复检", "中　文 0001"]


@pytest.mark.parametrize("value", REAL_NUMBERS + ["a", "x" * 64, "GX-S-000123", "报告(一)", "A/B/C"])
def test_numbers_accept_printable_text(value):
    from labwitness.ids import check_number, number_problem

    assert number_problem(value) is None and check_number(value) == value


@pytest.mark.parametrize("value, why", [
    ("", "empty"), ("x" * 65, "longer"), (" JC-1", "space"), ("JC-1 ", "space"), ("JC\n1", "U+000A"),
    ("JC\t1", "U+0009"), ("JC\x001", "U+0000"), ("JC\u202e1", "U+202E"),  # a bidi override shows another number
    ("JC\u200b1", "U+200B"), ("JC\u00a01", "U+00A0"), ("JC\u20281", "U+2028"), (None, "empty"),
])
def test_numbers_refuse_control_and_invisible_characters(value, why):
    from labwitness.errors import InvalidIdentifierError, ValidationError
    from labwitness.ids import check_number

    with pytest.raises(InvalidIdentifierError) as e:
        check_number(value, "报告编号", "report no.")
    assert why in str(e.value) and str(e.value).startswith("报告编号无效")
    assert isinstance(e.value, ValidationError) and isinstance(e.value, ValueError)  # 422 in the API, exit 2 in the CLI


def test_file_slug_is_safe_and_tells_numbers_apart():
    from labwitness.ids import file_slug

    slugs = {n: file_slug(n) for n in REAL_NUMBERS + ["JC2026-0001_A", "../../etc/passwd", "a/../../b"]}
    for number, slug in slugs.items():
        assert slug and all(c.isascii() and (c.isalnum() or c in "._-") for c in slug), slug
        assert "/" not in slug and ".." not in slug and len(slug) <= 49
    assert file_slug("JC2026-0001/A") != file_slug("JC2026-0001_A")  # same safe part, different numbers
    assert file_slug("JC2026-0001/A").startswith("JC2026-0001_A-")


@pytest.mark.parametrize("value", ["cam\n", "cam\r\n", "-cam", "", "a" * 65, "cam 1", "摄像机", "cam/1", ".."])
def test_entity_id_grammar_is_one_and_exact(value):
    """"cam\\n" passed ``CAMERA_ID_RE.match`` with its ``$``; every user of the grammar refuses it now."""
    from pydantic import ValidationError as PydanticError

    from api.registry_models import AreaIn, CameraIn, EquipmentIn
    from api.ingest import TestRecordIn
    from labwitness.errors import InvalidIdentifierError
    from labwitness.ids import check_entity_id
    from storage.layout import check_camera_id, segment_key

    with pytest.raises(InvalidIdentifierError):
        check_entity_id(value)
    with pytest.raises(InvalidIdentifierError):
        check_camera_id(value)
    with pytest.raises((InvalidIdentifierError, TypeError)):
        segment_key(value, datetime(2026, 1, 1, tzinfo=timezone.utc), 1000)
    for model, body in ((AreaIn, {"id": value, "name": "x"}), (CameraIn, {"id": value}),
                        (EquipmentIn, {"id": value, "name": "x"}), (CameraIn, {"id": "ok", "area_id": value}),
                        (EquipmentIn, {"id": "ok", "name": "x", "camera_ids": [value]})):
        with pytest.raises(PydanticError):
            model(**body)
    with pytest.raises(PydanticError):
        TestRecordIn(report_no="JC-1", area_ids=[value], started_at="2026-01-01T00:00:00Z", ended_at="2026-01-01T01:00:00Z")


def test_registry_refuses_a_bad_entity_id_on_every_path(index, tmp_path, seaweed):
    """The registry itself checks, so the CLI, the UI, the demo and the API cannot differ."""
    from api.camera_rows import new_camera
    from api.secrets import CredentialCipher
    from index.models import Area, Camera, Equipment
    from index.registry import Registry
    from labwitness.errors import InvalidIdentifierError

    reg = Registry(index.engine, lambda: 1)
    with pytest.raises(InvalidIdentifierError):
        reg.put_area(Area(id="lixue\n", name="力学室", created_ms=0), "test")
    reg.put_area(Area(id="lixue", name="力学室", created_ms=0), "test")
    with pytest.raises(InvalidIdentifierError):
        reg.add_camera(Camera(id="cam\n", rtsp_url="rtsp://127.0.0.1/x", created_ms=0), "test")
    with pytest.raises(InvalidIdentifierError):
        reg.put_equipment(Equipment(id="UTM 1", name="x", created_ms=0), [], "test")
    with pytest.raises(InvalidIdentifierError):
        new_camera(CredentialCipher.from_settings(None, tmp_path), 1, "cam\n", "rtsp://127.0.0.1/x")
    assert [a.id for a in reg.areas()] == ["lixue"] and reg.cameras() == []

    # and the CLI, which used to register `area add --id "cam\n"` without any check
    from clitools import env_for, lw

    r = lw(["area", "add", "--id", "lab\n", "--name", "力学室"], env_for(tmp_path, seaweed))
    assert r.returncode == 2 and "area id" in r.stderr + r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def _record(start: datetime, end: datetime, number: str) -> dict:
    return {"report_no": number, "commission_no": f"WT{number}", "project_name": "南宁某综合楼", "test_item": "钢筋拉伸",
            "sample_ids": [f"{number}-样1"], "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
            "started_at": start.isoformat(), "ended_at": end.isoformat()}


def test_real_report_numbers_through_ingest_footage_export_verify(running, tmp_path):
    """Each real-looking number: ingest (record id holding it too), footage by the encoded and
    the raw path, export, download, offline verify, the UI's links, and the CLI's file name."""
    from fastapi.testclient import TestClient

    from api.evidence import verify_package
    from webtools import sign_in

    client, rt = running
    tokens = {r: rt.tokens.create(f"t-{r}", r, "test")[1] for r in ("ingest", "inspector")}
    ingest, insp = TestClient(client.app), TestClient(client.app)
    ingest.headers["Authorization"] = f"Bearer {tokens['ingest']}"
    insp.headers["Authorization"] = f"Bearer {tokens['inspector']}"
    now = datetime.now(timezone.utc)
    for n, number in enumerate(REAL_NUMBERS):
        rid = f"REC/{n}/{number}"
        r = ingest.put(f"/api/v1/test-records/{quote(rid, safe='')}", json=_record(now - timedelta(seconds=4), now, number))
        assert r.status_code == 201, (number, r.text)
        assert r.json()["record_id"] == rid and r.json()["report_no"] == number
        got = client.get(f"/api/v1/test-records/{quote(rid, safe='')}")
        assert got.status_code == 200 and got.json()["record"]["sample_ids"] == [f"{number}-样1"]
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > now.timestamp() * 1000 + 500, 30,
             what="footage past the records' end")
    web = sign_in(client.app, tokens["inspector"])
    search = web.get("/ui/search", params={"report_no": "JC"}).text

    for number in REAL_NUMBERS:
        encoded = quote(number, safe="")
        # footage: percent-encoded, and the raw form with its '/' left as it is
        for path in {encoded, quote(number, safe="/")}:
            f = insp.get(f"/api/v1/reports/{path}/footage")
            assert f.status_code == 200, (number, path, f.text)
            assert f.json()["report_no"] == number and f.json()["cameras"][0]["clips"]
        # export -> download -> verify
        r = insp.post(f"/api/v1/reports/{encoded}/exports")
        assert r.status_code == 202, (number, r.text)
        pid = r.json()["id"]
        st = wait_for(lambda: (s := insp.get(f"/api/v1/exports/{pid}").json())["status"] != "running" and s, 120,
                      what=f"export of {number}")
        assert st["status"] == "done" and st["report_no"] == number, st
        z = insp.get(st["download_url"])
        disposition = z.headers["content-disposition"]
        assert disposition.isascii() and "/" not in disposition.split("filename=")[1], disposition
        pkg = tmp_path / f"{pid}.zip"
        pkg.write_bytes(z.content)
        rep = verify_package(pkg, trusted_public_pem=rt.exporter.key.public_pem())
        assert rep.ok, (number, rep.problems)
        assert rep.manifest["report_no"] == number
        assert [r["record_id"] for r in rep.manifest["test_records"]] == [f"REC/{REAL_NUMBERS.index(number)}/{number}"]
        assert rep.manifest["test_records"][0]["sample_ids"] == [f"{number}-样1"]
        with zipfile.ZipFile(pkg) as zf:
            assert all("/" not in name and ".." not in name for name in zf.namelist())
        # the UI: the search links to the report, properly encoded, and the page opens
        link = f"/ui/report?no={encoded}"
        if "JC" in number:
            assert f'href="{link}"' in search, number
        page = web.get(link)
        assert page.status_code == 200 and "export-form" in page.text, number

    # the CLI writes the package under a safe name of its own choosing (it used to put the raw number in the path)
    s = rt.settings
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LABWITNESS_DATA_DIR": str(s.data_dir), "LABWITNESS_DATABASE_URL": s.db_url,
           "LABWITNESS_S3_ENDPOINT": s.s3_endpoint, "LABWITNESS_S3_ACCESS_KEY": s.s3_access_key,
           "LABWITNESS_S3_SECRET_KEY": s.s3_secret_key.get_secret_value(), "LABWITNESS_S3_BUCKET": s.s3_bucket}
    out = tmp_path / "cli"
    out.mkdir()
    r = subprocess.run([sys.executable, "-m", "api.cli", "export", "JC2026-0001/A"], env=env, cwd=out, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "注意 / warning:" in r.stderr and "window" in r.stderr  # its window (with the margin) is not over yet
    made = list(out.iterdir())
    assert len(made) == 1 and made[0].name.startswith("evidence-JC2026-0001_A-") and made[0].suffix == ".zip", made
    assert verify_package(made[0]).ok
    assert json.loads(zipfile.ZipFile(made[0]).read("manifest.json"))["report_no"] == "JC2026-0001/A"
