"""``labwitness demo`` run for real (simulated ONVIF cameras over GStreamer RTSP, SeaweedFS,
SQLite, uvicorn), twice and three times on one data directory: what it prints can be
pasted into a shell, and a second run reuses its cameras, areas, equipment and tokens."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import threading

import pytest
from rich.console import Console
from sqlmodel import Session, select

from index.models import ApiToken, Area, Camera, Equipment

from conftest import ACCESS, SECRET, free_port, wait_for


class DemoRun:
    """One ``run_demo`` in a thread, its panel in a narrow console and its copyable lines in ``out``."""

    def __init__(self, settings, cameras: int) -> None:
        from api.demo import run_demo

        self.console_text, self.out = io.StringIO(), io.StringIO()
        console = Console(file=self.console_text, width=60, force_terminal=False)  # narrower than any command
        self.stop = threading.Event()
        self.error: BaseException | None = None

        def go() -> None:
            try:
                run_demo(settings, cameras=cameras, duration=None, stop=self.stop, console=console, out=self.out)
            except BaseException as e:  # noqa: BLE001 - handed to the test thread
                self.error = e

        self.thread = threading.Thread(target=go, name="demo", daemon=True)
        self.thread.start()
        wait_for(lambda: "curl " in self.out.getvalue() or not self.thread.is_alive(), 90, what="the demo's banner")
        assert self.error is None and self.thread.is_alive(), self.error

    def line(self, start: str) -> str:
        return next(ln.strip() for ln in self.out.getvalue().splitlines() if ln.strip().startswith(start))

    def finish(self) -> str:
        self.stop.set()
        self.thread.join(90)
        assert not self.thread.is_alive() and self.error is None, self.error
        return self.console_text.getvalue()


@pytest.fixture
def demo_runs():
    """Starts DemoRuns; any still running when the test ends (a failed assertion) is stopped."""
    runs: list[DemoRun] = []

    def start(settings, cameras: int) -> DemoRun:
        runs.append(DemoRun(settings, cameras))
        return runs[-1]

    yield start
    for run in runs:
        run.stop.set()
    for run in runs:
        run.thread.join(90)


def _settings(tmp_path, seaweed):
    from api.settings import load_settings

    return load_settings(data_dir=tmp_path / "demo", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                         s3_secret_key=SECRET, s3_bucket="demo-footage", segment_seconds=2.0, retention_jobs=False,
                         discovery_port=free_port(), discovery_interfaces="127.0.0.1", port=free_port())


def _registry(settings) -> dict:
    from index.db import make_engine

    engine = make_engine(settings.db_url)
    try:
        with Session(engine) as s:
            return {"cameras": {c.id: c for c in s.exec(select(Camera))}, "areas": sorted(a.id for a in s.exec(select(Area))),
                    "equipment": [e.id for e in s.exec(select(Equipment))],
                    "tokens": [(t.name, t.role, t.revoked_ms) for t in s.exec(select(ApiToken))]}
    finally:
        engine.dispose()


def test_demo_prints_pasteable_commands_and_a_second_run_reuses_everything(tmp_path, seaweed, demo_runs):
    from api.demo_setup import ROLES, TOKENS_FILE
    from api.installation import read_state

    settings = _settings(tmp_path, seaweed)
    first = demo_runs(settings, cameras=2)
    # a token for every role, each on a line of its own
    tokens = {role: first.line(role).split()[1] for role in ROLES}
    assert all(t.startswith("lw_") for t in tokens.values()), tokens
    # the curl line, pasted into a shell as it is, answers
    curl = first.line("curl ")
    assert tokens["inspector"] in curl
    got = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["report_no"] == "JC-DEMO-0001"
    # the CLI lines name this data directory, and its URL is what the CLI will put into packages
    assert first.line("export LABWITNESS_DATA_DIR=") == f"export LABWITNESS_DATA_DIR={settings.data_dir.resolve()}"
    assert read_state(settings.data_dir)["public_base_url"] == f"http://127.0.0.1:{settings.port}"
    before = _registry(settings)
    said = first.finish()
    assert f"the spool is empty ({settings.data_dir / 'spool'})" in said  # on one line: the path can be copied

    # second run, same data directory: the simulators come up on new ports
    settings2 = settings.model_copy(update={"port": free_port()})
    second = demo_runs(settings2, cameras=2)
    assert {role: second.line(role).split()[1] for role in ROLES} == tokens  # the same tokens, still valid
    after = _registry(settings2)
    second.finish()
    assert sorted(after["cameras"]) == sorted(before["cameras"]) == ["demo-cam-1", "demo-cam-2"]
    for cid, cam in after["cameras"].items():
        assert cam.enabled and cam.rtsp_url != before["cameras"][cid].rtsp_url  # the new simulator's port
        assert cam.serial == before["cameras"][cid].serial and cam.area_id == before["cameras"][cid].area_id
    assert after["areas"] == before["areas"] == ["hunningtu", "lixue"]
    assert after["equipment"] == before["equipment"] == ["UTM-DEMO-01"]
    assert len(after["tokens"]) == 4 and all(revoked is None for _, _, revoked in after["tokens"])
    assert stat.S_IMODE((settings.data_dir / TOKENS_FILE).stat().st_mode) == 0o600
    assert read_state(settings.data_dir)["public_base_url"] == f"http://127.0.0.1:{settings2.port}"

    # a third run with one camera: the demo camera it no longer simulates is disabled, not left offline
    third = demo_runs(settings.model_copy(update={"port": free_port()}), cameras=1)
    third.finish()
    cams = _registry(settings)["cameras"]
    assert sorted(cams) == ["demo-cam-1", "demo-cam-2"]
    assert cams["demo-cam-1"].enabled and not cams["demo-cam-2"].enabled
