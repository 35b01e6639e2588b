"""Credentials inside URLs: the one rule for finding, masking and putting them back (pure).

Cameras take credentials two ways: before the host (``rtsp://user:pw@host/x``)
and, on several brands, in the query (``rtsp://host/ch1?user=u&password=pw``,
``?loginuse=u&loginpas=pw``, ``?usr=u&pwd=pw``, a ``token=``...). Both are
secrets alike: stored encrypted (``api.secrets``), never shown, never logged.

- :func:`redact_url` — the URL as people and logs may see it: the password
  before ``@`` and the value of every secret query parameter become ``***``.
  Every place that shows, logs, audits or returns a camera URL goes through it
  (or :func:`redact_text` for free text that may quote one, e.g. FFmpeg's errors).
- :func:`split_query_secrets` / :func:`restore_query_secrets` — what the
  registry stores: the URL with ``***`` in place of each secret value (so it can
  be shown as is, and a copy of it pasted back keeps the stored secret), and
  the values in order, which the caller encrypts.

Some firmwares (Xiongmai and its OEMs, old Hikvision paths) put the same
``name=value`` pairs in the *path*: ``rtsp://h/user=admin_password=pw_channel=1_stream=0.sdp``,
``rtsp://h/user=admin&password=pw&channel=1``.  Those are secrets by the same
names; a path value runs to the next ``/``, ``&``, ``;`` or ``_name=`` (so a
password may hold ``_``; one holding ``_x=`` is ambiguous and shows from there on).
They are stored under the name ``/<name>``.

A parameter is secret by its name (percent-decoded, case-insensitive): any
name containing ``pass``, ``pasw``, ``pwd``, ``psw``, ``secret``, ``token``,
``auth``, ``key``, ``sign``, ``credential``, ending in ``pas`` (``loginpas``),
or exactly ``pw``/``sig``. User names
(``user=``, ``username=``, ``loginuse=``) stay visible, as the user name
before ``@`` does. A non-secret parameter wrongly taken for one (``keyframe=``)
costs only its display; the recorder gets its value back all the same.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_SECRET_NAME = re.compile(r"pass|pasw|pas$|pwd|psw|secret|token|auth|key|sign|credential")
_SECRET_EXACT = {"pw", "sig"}
#: URLs inside free text (log lines, error messages, audit details)
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")


def is_secret_param(name: str) -> bool:
    n = unquote(name).strip().lower()
    return n in _SECRET_EXACT or bool(_SECRET_NAME.search(n))


def _parts(url: str) -> tuple[str, str | None, str]:
    """``(before '?', query or None without a '?', '#fragment' or '')`` by plain string
    splitting: works on any text.  An empty query (``…0.sdp?``, as old Hikvision paths
    end) is kept: the camera gets back the very URL."""
    head, hashmark, fragment = url.partition("#")
    base, mark, query = head.partition("?")
    return base, (query if mark else None), hashmark + fragment


#: ``name=value`` inside a path: after ``/``, ``_``, ``&`` or ``;``; the value ends at the next
#: separator that starts another ``name=`` (or at ``/``, ``&``, ``;``)
_PATH_PAIR = re.compile(r"(?<=[/_&;])([A-Za-z][A-Za-z0-9]*)=((?:(?!_[A-Za-z][A-Za-z0-9]*=)[^/&;])*)")
_PATH_PREFIX = "/"


def _split_path(base: str) -> tuple[str, str]:
    """``(scheme://authority, /path)`` of the part before ``?``; ``(base, "")`` without a scheme."""
    scheme, sep, rest = base.partition("://")
    if not sep:
        return base, ""
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority}", slash + path


def _path_secrets(base: str, keep_masked: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """``base`` with every secret path value masked, and ``[("/name", raw value), ...]``."""
    head, path = _split_path(base)
    if "=" not in path:
        return base, []
    found: list[tuple[str, str]] = []

    def mask(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if not is_secret_param(name) or (keep_masked and value == MASK):
            return m.group(0)
        found.append((_PATH_PREFIX + name, value))
        return f"{name}={MASK}"

    return head + _PATH_PAIR.sub(mask, path), found


def _join(base: str, pairs: list[str] | None, fragment: str) -> str:
    return base + ("?" + "&".join(pairs) if pairs is not None else "") + fragment


def _redact_userinfo(base: str) -> str:
    scheme, sep, rest = base.partition("://")
    if not sep:
        return base
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return base
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':' + MASK if colon else ''}@{hostport}{slash}{path}"


def redact_url(url: str | None) -> str:
    """``url`` with every secret it carries replaced by ``***``; never raises."""
    if not url:
        return "" if url is None else url
    base, query, fragment = _parts(str(url))
    pairs = None if query is None else []
    for pair in query.split("&") if query else []:
        name, eq, _value = pair.partition("=")
        pairs.append(f"{name}={MASK}" if eq and is_secret_param(name) else pair)
    return _join(_redact_userinfo(_path_secrets(base)[0]), pairs, fragment)


def redact_text(text: str | None) -> str:
    """Free text with every URL in it redacted (:func:`redact_url`)."""
    if not text:
        return "" if text is None else text
    return _URL_IN_TEXT.sub(lambda m: _redact_match(m.group(0)), str(text))


def _redact_match(found: str) -> str:
    # a URL quoted in prose: "... [rtsp://h/x?pwd=1]." ends before the closing mark
    tail = ""
    while found and (found[-1] in ".,;:)" or (found[-1] == "]" and "[" not in found)):
        found, tail = found[:-1], found[-1] + tail
    return redact_url(found) + tail


def split_query_secrets(url: str) -> tuple[str, list[tuple[str, str]]]:
    """``(url with *** for each secret query or path value, [(name, raw value), ...])``
    (path values under ``/name``).

    Values are kept exactly as written (still percent-encoded), so restoring
    them gives back the very URL. A value that already is ``***`` is a
    placeholder for a secret stored earlier, not a secret: it is left for
    :func:`restore_query_secrets`.
    """
    base, query, fragment = _parts(url)
    base, secrets = _path_secrets(base, keep_masked=True)
    pairs: list[str] | None = None if query is None else []
    for pair in query.split("&") if query else []:
        name, eq, value = pair.partition("=")
        if eq and is_secret_param(name) and value != MASK:
            secrets.append((name, value))
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return _join(base, pairs, fragment), secrets


def restore_query_secrets(url: str, secrets: list[tuple[str, str]] | list[list[str]]) -> str:
    """Put stored secret values back where ``url`` has ``***``, by name and in order;
    a placeholder with no stored value stays ``***``."""
    if not secrets:
        return url
    pending: dict[str, list[str]] = {}
    for name, value in secrets:
        pending.setdefault(name, []).append(value)
    base, query, fragment = _parts(url)
    head, path = _split_path(base)

    def unmask(m: re.Match) -> str:
        queue = pending.get(_PATH_PREFIX + m.group(1))
        return f"{m.group(1)}={queue.pop(0)}" if m.group(2) == MASK and queue else m.group(0)

    base = head + _PATH_PAIR.sub(unmask, path)
    pairs = None if query is None else []
    for pair in query.split("&") if query else []:
        name, eq, value = pair.partition("=")
        if eq and value == MASK and pending.get(name):
            pair = f"{name}={pending[name].pop(0)}"
        pairs.append(pair)
    return _join(base, pairs, fragment)
