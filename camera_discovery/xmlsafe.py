"""The one place XML from devices is parsed: safely, and matched by local name.

Owns :func:`parse` (bytes from the network → an ElementTree element, or a
:class:`~labwitness.errors.DeviceProtocolError` saying clearly what was wrong)
and the local-name helpers every response parser here uses.

Safety: callers bound the size (and time) of what they read before it gets
here; :func:`parse` refuses any document that carries a DTD at all
(defusedxml with ``forbid_dtd``), so no entity can ever be declared — neither
an external one that reads local files (XXE) nor the nested ones of an
entity-expansion bomb ("billion laughs"). Expat stops at the ``<!DOCTYPE``
before any declaration is processed. No camera needs a DTD to say its time.

Tolerance: real cameras put ONVIF elements in the wrong namespace, in none,
or under a default namespace the schema never mentions, so the helpers match
*local* names (case-insensitively) and never namespace URIs; and they search
descendants when a wrapper element the schema requires is missing.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from labwitness.errors import DeviceProtocolError

#: default bound for one SOAP/WS-Discovery answer; GetProfiles of a camera
#: with many profiles is ~100 KB, so this leaves room without inviting abuse.
MAX_XML_BYTES = 1_000_000

# Encodings expat decodes by itself; anything else is transcoded first.
_EXPAT_ENCODINGS = {"utf-8", "utf8", "utf-16", "utf16", "iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"}
#: text codecs that are not character sets of documents (they map names or escapes)
_NOT_CHARSETS = {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"}
_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"'][^>]*\?>")
_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body)", re.IGNORECASE)


def parse(data: bytes, what: str, max_bytes: int = MAX_XML_BYTES) -> Element:
    """Parse one answer; ``what`` names it in errors (e.g. ``"GetProfiles from 10.0.0.5"``)."""
    if len(data) > max_bytes:
        raise DeviceProtocolError(f"应答过大 / {what}: answer larger than {max_bytes} bytes, not parsed")
    if not data.strip():
        raise DeviceProtocolError(f"空应答 / {what}: empty answer")
    if _HTML_START.match(data):
        raise DeviceProtocolError(
            f"返回了网页而不是 SOAP / {what}: answered with an HTML page, not SOAP "
            "(a web login page or a proxy? check the address and port)"
        )
    data = _transcode(data)
    try:
        try:
            return _fromstring(data)
        except ParseError as e:
            if "unbound prefix" not in str(e):
                raise
            # Camera quirk: prefixes used without their xmlns declaration
            # (``<tt:Hour>`` with no ``xmlns:tt``). Matching is by local name,
            # so any URI will do; declare the missing ones and parse again.
            return _fromstring(_declare_missing_prefixes(data))
    except DTDForbidden:
        raise DeviceProtocolError(
            f"含 DTD，已拒绝 / {what}: the XML carries a DTD (<!DOCTYPE …>); refused, because "
            "entity declarations allow file reads (XXE) and entity-expansion bombs"
        ) from None
    except (EntitiesForbidden, ExternalReferenceForbidden) as e:
        raise DeviceProtocolError(f"含实体声明，已拒绝 / {what}: XML entity declaration refused ({e})") from None
    except ParseError as e:
        raise DeviceProtocolError(f"XML 格式错误 / {what}: malformed XML ({e})") from None


def _fromstring(data: bytes) -> Element:
    return safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)


_PREFIX_USED = re.compile(rb"</?([A-Za-z_][\w.-]*):[A-Za-z_]|\s([A-Za-z_][\w.-]*):[A-Za-z_][\w.-]*\s*=")
_PREFIX_DECLARED = re.compile(rb"xmlns:([A-Za-z_][\w.-]*)\s*=")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_][\w.:-]*")


def _declare_missing_prefixes(data: bytes) -> bytes:
    used = {a or b for a, b in _PREFIX_USED.findall(data)}
    missing = used - set(_PREFIX_DECLARED.findall(data)) - {b"xml", b"xmlns"}
    root = _FIRST_ELEMENT.search(data)
    if not missing or root is None:
        return data
    declarations = b"".join(b' xmlns:%s="urn:labwitness:undeclared:%s"' % (p, p) for p in sorted(missing))
    return data[: root.end()] + declarations + data[root.end():]


def _transcode(data: bytes) -> bytes:
    """Re-encode documents declared in an encoding expat cannot decode.

    Camera quirk: firmware for the Chinese market declares
    ``encoding="GB2312"`` (or GBK) for names with Chinese characters; expat
    only knows UTF-8/16, Latin-1 and ASCII and would call it malformed.
    """
    match = _DECLARATION.match(data)
    if not match:
        return data
    name = match.group(1).decode("ascii").lower()
    if name in _EXPAT_ENCODINGS:
        return data
    try:
        # Only a real character set may decode the answer: Python's codec registry
        # also holds transforms (base64, zlib) and codecs that refuse the "replace"
        # handler or any decoding at all (idna, undefined). A hostile answer names
        # any of them; whatever the codec raises, it is one bad answer.
        codec = codecs.lookup(name)
        if not codec._is_text_encoding or codec.name in _NOT_CHARSETS:
            raise LookupError(name)
        text = data[match.end():].decode(name, errors="replace")
    except LookupError:
        raise DeviceProtocolError(f"未知字符编码 / unknown XML encoding {name!r}") from None
    except (UnicodeError, ValueError, TypeError) as e:
        raise DeviceProtocolError(f"字符编码无法解码 / the answer cannot be decoded as {name!r} ({e})") from None
    return b'<?xml version="1.0" encoding="utf-8"?>' + text.encode("utf-8")


# -- local-name helpers ----------------------------------------------------


def local(tag: object) -> str:
    """``{ns}Name`` → ``name``, lower-cased (comments and PIs give "")."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def children(el: Element, name: str) -> list[Element]:
    """Direct children with this local name."""
    name = name.lower()
    return [c for c in el if local(c.tag) == name]


def descendants(el: Element, name: str) -> Iterator[Element]:
    """Descendants (not ``el`` itself) with this local name, document order."""
    name = name.lower()
    for d in el.iter():
        if d is not el and local(d.tag) == name:
            yield d


def first(el: Element | None, *path: str) -> Element | None:
    """Follow ``path`` by local name, each step a child if present, else any descendant.

    The descendant fallback is what tolerates a missing wrapper element
    (e.g. ``Uri`` directly under ``GetStreamUriResponse`` without ``MediaUri``).
    """
    for name in path:
        if el is None:
            return None
        direct = children(el, name)
        el = direct[0] if direct else next(descendants(el, name), None)
    return el


def text(el: Element | None, *path: str) -> str | None:
    """Stripped text at ``path`` (see :func:`first`), or None when absent or empty."""
    found = first(el, *path) if path else el
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return value or None


def attr(el: Element | None, name: str) -> str | None:
    """Attribute by local name, case-insensitively (``token``, ``Token``, ``{ns}token``)."""
    if el is None:
        return None
    name = name.lower()
    for key, value in el.attrib.items():
        if local(key) == name:
            return value.strip()
    return None
