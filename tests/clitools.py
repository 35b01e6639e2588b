"""Helpers for the tests of the ``labwitness`` command as a script would use it: in a real
subprocess (``python -m api.cli``), with its settings in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ACCESS, SECRET

ROOT = Path(__file__).resolve().parents[1]


def env_for(tmp: Path, seaweed, bucket: str = "cli-footage", **extra) -> dict:
    """The environment of a command working on ``tmp/data`` and a bucket of the test's SeaweedFS."""
    env = dict(os.environ)
    env.update({
        "LABWITNESS_DATA_DIR": str(tmp / "data"), "LABWITNESS_S3_ENDPOINT": seaweed.endpoint,
        "LABWITNESS_S3_ACCESS_KEY": ACCESS, "LABWITNESS_S3_SECRET_KEY": SECRET, "LABWITNESS_S3_BUCKET": bucket,
        "LABWITNESS_RTSP_OPEN_TIMEOUT_S": "3", "LABWITNESS_RTSP_READ_TIMEOUT_S": "3",
        "PYTHONPATH": str(ROOT),
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def lw(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``labwitness ARGS``; its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
