"""Files and directories that hold evidence or secrets belong to the service's user alone.

The data directory, the spool, the embedded store's directory, the SQLite index
(and its ``-wal``/``-shm``/``-journal``), the credentials and signing keys are
made 0700 (directories) and 0600 (files) where they are created — explicitly,
not through the umask, which belongs to whoever started the process — and
tightened again at every start, so an installation made by an older version, or
a directory created beforehand by hand, ends up the same.  Small files of state
are replaced whole (:func:`write_atomic`, :func:`fsync_dir`): the spools' commit
records, the document spool, the embedded store's keys. Inside a 0700
directory nothing else is reachable by other users, whatever its own mode.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
#: files SQLite keeps beside a database (it creates them with the database file's mode)
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path | str) -> Path:
    """Create ``path`` (and missing parents) if needed; the directory itself becomes 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _chmod(path, DIR_MODE)
    return path


def private_file(path: Path | str) -> Path:
    """Create ``path`` empty if missing, owner-only from its first byte; an existing one becomes 0600."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        _chmod(path, FILE_MODE)
    return path


def write_atomic(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data``: owner-only from its first byte, fsynced, then renamed over
    the old file, so a reader (or a restart after a crash) sees the old bytes or the new, never
    half.  The caller fsyncs the directory (:func:`fsync_dir`) when the rename itself must last."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover keeps its own mode: O_EXCL below creates ours
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fsync_dir(path: Path | str) -> None:
    """Make the directory's entries (a rename, a new or removed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_sqlite(path: Path | str) -> Path:
    """The database file (created empty if missing: SQLite takes an empty file as a new
    database) and whichever of its companion files exist, 0600."""
    path = private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            _chmod(companion, FILE_MODE)
    return path


def _chmod(path: Path, mode: int) -> None:
    try:
        if (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
    except PermissionError:
        # not ours (a directory an administrator prepared): say so, do not stop the service
        log.warning("无法收紧权限 / cannot restrict %s to %o: not owned by this user", path, mode)
