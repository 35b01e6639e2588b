"""What a failed export shows the people who asked for it (api.exporter.public_error): our own
errors as written; a full disk as something an admin can act on, without the server's paths;
anything else only as a reference into the log."""

from __future__ import annotations

import errno

import pytest

from api.exporter import public_error
from labwitness.errors import StorageUnavailableError


@pytest.mark.parametrize("error, shows, hides", [
    (StorageUnavailableError("v1/cam-1/2026/x.mp4: connection broken"), "connection broken", None),
    (OSError(errno.ENOSPC, "No space left on device", "/tmp/lw-export-abc/cam-1.mp4"), "TMPDIR", "/tmp/lw-export-abc"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/srv/secret/path"), "free space", "/srv/secret"),
    (OSError(errno.EIO, "Input/output error", "/srv/secret/path"), "internal error (ref ", "/srv/secret"),
    (RuntimeError("Error in PyAV callback: /srv/secret/path"), "internal error (ref ", "/srv/secret"),
])
def test_what_a_failed_export_shows(error, shows, hides):
    text = public_error(error)
    assert shows in text
    if hides is not None:
        assert hides not in text
    if "ref " in shows:  # the reference is in the error's notes, so the logged traceback carries it
        ref = text.split("ref ")[1].split(";")[0]
        assert any(ref in n for n in getattr(error, "__notes__", []))
