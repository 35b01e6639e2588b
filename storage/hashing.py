"""The SHA-256 a stored object carries in its metadata (``lw-sha256``), of a local file.

Neutral ground: the recorder (spool recovery), the exporter (an evidence
package) and the S3 backend (a spool file before upload) hash files the same
way without importing a storage backend.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
