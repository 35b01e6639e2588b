"""recorder.malloc_arenas: a recorder process caps glibc's malloc arenas (docs/decisions.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GLIBC = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None


def _child(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (the setting is process-wide and once only)."""
    e = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=e, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(GLIBC is None, reason="glibc only")
def test_set_once_per_process_before_threads():
    assert _child("from recorder.malloc_arenas import bound_arenas as b; print(b(), b())") == "True False"


@pytest.mark.skipif(GLIBC is None, reason="glibc only")
def test_the_operators_malloc_arena_max_wins():
    assert _child("from recorder.malloc_arenas import bound_arenas as b; print(b())", MALLOC_ARENA_MAX="4") == "False"
