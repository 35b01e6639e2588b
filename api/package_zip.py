"""Reading an evidence package that may be hostile (``labwitness verify`` runs on
whatever file someone hands over).

Nothing is extracted; still, before any member is read the archive must look
like something labwitness could have written, or the verification stops with
an :class:`IntegrityError` saying what is wrong:

- at most ``MAX_MEMBERS`` members, each name unique and a plain relative path
  (no ``..``, no leading ``/``, no ``\\``, no drive, no control characters);
- no encrypted member;
- a zip bomb is refused by arithmetic, before reading: labwitness stores its
  members uncompressed, so a member may expand to at most ``MAX_RATIO`` times
  its compressed size (plus ``SLACK_BYTES``) and all of them together to at most
  ``MAX_RATIO`` times the archive — whatever the declared sizes say, reading
  never does more work than that (Python's zipfile stops at a member's declared
  size and fails its CRC if the data goes on).
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path

from labwitness.errors import IntegrityError

MAX_MEMBERS = 4096
MAX_NAME_CHARS = 255
MAX_RATIO = 100
SLACK_BYTES = 1 << 20  # a small member (the manifest) may compress better than MAX_RATIO
#: what can go wrong reading a member's bytes once the archive passed the checks
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)


def malformed(problem: str) -> IntegrityError:
    return IntegrityError(f"证据包格式错误 / malformed evidence package: {problem}")


def open_package(path: Path) -> zipfile.ZipFile:
    """The archive, opened and checked (see the module docstring)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, NotImplementedError, EOFError) as e:
        raise IntegrityError(f"不是有效的证据包 / not a readable evidence package: {e}") from e
    try:
        _check(zf, Path(path).stat().st_size)
    except BaseException:
        zf.close()
        raise
    return zf


def _check(zf: zipfile.ZipFile, archive_bytes: int) -> None:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise malformed(f"{len(infos)} members, at most {MAX_MEMBERS}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        _check_name(name)
        if name in seen:
            raise malformed(f"the member {name!r} appears twice")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise malformed(f"the member {name!r} is encrypted")
        if info.compress_size > archive_bytes:
            raise malformed(f"the member {name!r} claims {info.compress_size} compressed bytes in a "
                            f"{archive_bytes}-byte file")
        if info.file_size > info.compress_size * MAX_RATIO + SLACK_BYTES:
            raise malformed(f"the member {name!r} would expand to {info.file_size} bytes from {info.compress_size} "
                            f"(more than {MAX_RATIO}x: a zip bomb)")
        total += info.file_size
    if total > archive_bytes * MAX_RATIO + SLACK_BYTES:
        raise malformed(f"the members would expand to {total} bytes from a {archive_bytes}-byte file "
                        f"(more than {MAX_RATIO}x: a zip bomb)")


def _check_name(name: str) -> None:
    parts = name.split("/")
    if (not name or len(name) > MAX_NAME_CHARS or name.startswith("/") or "\\" in name or ".." in parts
            or "" in parts or (len(name) > 1 and name[1] == ":")
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)):
        raise malformed(f"the member name {name!r} is not a plain relative file name")


def read_small(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A small member whole (manifest, signature, key), refusing one larger than ``limit``."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise malformed(f"{name} is {info.file_size} bytes, at most {limit}")
    try:
        with zf.open(info) as fh:
            return fh.read(limit)
    except READ_ERRORS as e:
        raise malformed(f"{name} cannot be read: {e}") from e


def member_sha256(zf: zipfile.ZipFile, name: str) -> str | None:
    """SHA-256 of a member's bytes, read in chunks; None if they cannot be read (bad CRC, truncated)."""
    h = hashlib.sha256()
    try:
        with zf.open(name) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except READ_ERRORS:
        return None
    return h.hexdigest()
