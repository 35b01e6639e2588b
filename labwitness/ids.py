"""Identifiers: the two grammars every layer checks with, each written once here.

**Entity ids** — cameras, areas, equipment — are chosen by the lab's admin and
become parts of object keys (``v1/{camera}/...``) and URLs, so they are strict
ASCII: 1-64 letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit.
Checked with ``fullmatch`` (a ``$`` would let ``"cam\\n"`` through).

**Numbers** — report no., commission no., sample ids, test record ids — come
from the lab's core data system exactly as they are printed on reports:
``（2026）建检字第0001号``, ``JC2026-0001/A``, ``2026 HNT 0001``.  Any printable
text of 1-64 characters (the index columns' width), where *printable* means:
no control or format characters (newlines, NUL, zero-width and bidi-override
characters that make a number read differently from what is stored), no
line/paragraph separators, no spaces other than the ASCII and the ideographic
one (a no-break space would make two numbers look the same), and no space at
either end.  The text is kept as it is (no normalisation: ``（`` and ``(`` are
different numbers to the lab).  A number never becomes a file name, key or URL
path as it is: file names use :func:`file_slug`, URLs percent-encode it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

from labwitness.errors import InvalidIdentifierError

ID_MAX = 64
_ENTITY = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
#: for JSON Schema / pydantic's Rust regex engine, where ``$`` is the end of the text only
ENTITY_ID_PATTERN = rf"^{_ENTITY}$"
_ENTITY_RE = re.compile(_ENTITY)

_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_SPACES = {" ", "\u3000"}


def check_entity_id(value: object, zh: str = "编号", en: str = "id") -> str:
    """``value`` if it is a valid camera/area/equipment id, else :class:`InvalidIdentifierError`."""
    if isinstance(value, str) and _ENTITY_RE.fullmatch(value):
        return value
    raise InvalidIdentifierError(
        f"{zh}无效：须为 1-64 个字母、数字、'.'、'_' 或 '-'，以字母或数字开头 / invalid {en} {value!r}: "
        "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")


def number_problem(value: object) -> str | None:
    """Why ``value`` is not a valid number (English, for the message), or None."""
    if not isinstance(value, str) or not value:
        return "empty"
    if len(value) > ID_MAX:
        return f"longer than {ID_MAX} characters"
    if value != value.strip():
        return "space at the start or end"
    for ch in value:
        cat = unicodedata.category(ch)
        if cat in _REFUSED_CATEGORIES or (cat == "Zs" and ch not in _SPACES):
            return f"character U+{ord(ch):04X} is not printable text"
    return None


def check_number(value: object, zh: str = "编号", en: str = "number") -> str:
    """``value`` if it is a valid report/commission/sample/record number, else :class:`InvalidIdentifierError`."""
    problem = number_problem(value)
    if problem is None:
        return value  # type: ignore[return-value]
    raise InvalidIdentifierError(
        f"{zh}无效：须为 1-{ID_MAX} 个可打印字符，不含控制字符、首尾无空格 / invalid {en} {value!r}: {problem} "
        f"(1-{ID_MAX} printable characters, no control characters, no space at either end)")


def file_slug(text: str, max_chars: int = 40) -> str:
    """A file-name part for ``text`` that is safe everywhere (ASCII letters, digits,
    ``.``, ``_``, ``-``; never ``..``) and still tells two numbers apart: what of
    the text is safe, then 8 hex digits of its SHA-256 (``JC2026-0001_A-1f0c…``;
    ``（2026）建检字第0001号`` -> ``2026_0001-…``)."""
    safe = re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_-")[:max_chars].strip("_-")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


# pydantic types: the same two rules for API models and parameters (the pattern is
# for the OpenAPI document; the Python check is what decides)
EntityId = Annotated[str, Field(min_length=1, max_length=ID_MAX, pattern=ENTITY_ID_PATTERN), AfterValidator(check_entity_id)]
Number = Annotated[str, Field(min_length=1, max_length=ID_MAX,
                              description="1-64 个可打印字符 / 1-64 printable characters (CJK, full-width brackets, '/', spaces)"),
                   AfterValidator(check_number)]
