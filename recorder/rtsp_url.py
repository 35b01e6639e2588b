"""The one rule for camera URLs, checked at every door (REST, web forms, CLI,
discovery results) and again before a recorder opens one.

A camera URL is ``rtsp://`` or ``rtsps://``, optional ``user[:password]@``, a
host — an IPv4 address in dotted-quad form, a bracketed IPv6 address, or a DNS
name — an optional port 1-65535, then a path and query.  Everything that the
recorder would only find out about later (a port of 99999, a host of
``256.1.1.1``, a space, a ``#`` that cut the password short) is refused here,
with a message that says which part is wrong.  The message never repeats the
user part, path or query: any of them may hold a password.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote_to_bytes

from labwitness.errors import ValidationError

SCHEMES = ("rtsp", "rtsps")
MAX_URL_CHARS = 2000  # Camera.rtsp_url's column
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: what RFC 3986 allows raw in userinfo, plus "@": a password with a raw "@" is read up
#: to the last "@" (as urllib and FFmpeg do) and is re-encoded whenever it is used
_USERINFO = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:%@]*")


def _refuse(problem: str) -> ValidationError:
    return ValidationError(f"摄像机 RTSP 地址无效 / invalid camera RTSP URL: {problem} "
                           "(rtsp://[user:password@]host[:port]/path)")


def check_rtsp_url(url: object) -> str:
    """``url`` unchanged if it is a camera URL labwitness can record, else :class:`ValidationError`."""
    if not isinstance(url, str) or not url:
        raise _refuse("empty")
    if len(url) > MAX_URL_CHARS:
        raise _refuse(f"longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise _refuse("contains a space or control character (write a space in the path as %20)")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise _refuse("it must start with rtsp:// or rtsps://")
    if "#" in rest:
        raise _refuse("a '#' is not allowed (in a password write it as %23)")
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        _check_userinfo(userinfo)
    _check_hostport(hostport)
    if _BAD_PERCENT.search(rest[len(authority):]):
        raise _refuse("the path has a '%' that is not followed by two hex digits")
    return url


def _check_userinfo(userinfo: str) -> None:
    user, _, password = userinfo.partition(":")
    if not user:
        raise _refuse("the user name before '@' is empty")
    if not _USERINFO.fullmatch(userinfo):
        raise _refuse("the user name or password has a character that must be percent-encoded (e.g. '/' as %2F)")
    if _BAD_PERCENT.search(userinfo):
        raise _refuse("the user name or password has a '%' that is not followed by two hex digits")
    for part in (user, password):
        try:
            text = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("the user name or password is not UTF-8 once decoded") from None
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            # it would end up inside an RTSP Authorization header line
            raise _refuse("the user name or password decodes to a control character")


def _check_hostport(hostport: str) -> None:
    if hostport.startswith("["):
        host, close, port = hostport[1:].partition("]")
        if not close:
            raise _refuse("the IPv6 address has no closing ']'")
        if port and not port.startswith(":"):
            raise _refuse("only ':port' may follow an IPv6 address in brackets")
        _check_ipv6(host)
        port = port[1:] if port else None
    else:
        host, colon, port = hostport.partition(":")
        if ":" in port:
            raise _refuse("an IPv6 address must be written in brackets: rtsp://[fe80::1]:554/path")
        _check_name(host)
        port = port if colon else None
    if port is not None:
        if not port.isascii() or not port.isdigit():
            raise _refuse(f"the port {port!r} is not a number")
        if not 1 <= int(port) <= 65535:
            raise _refuse(f"the port {port} is out of range 1-65535")


def _check_ipv6(host: str) -> None:
    addr, pct, zone = host.partition("%25")  # a link-local zone: [fe80::1%25eth0]
    if pct and not re.fullmatch(r"[A-Za-z0-9._~-]+", zone):
        raise _refuse(f"the IPv6 zone {zone!r} is not valid")
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        raise _refuse(f"the host [{host}] is not an IPv6 address") from None


def _check_name(host: str) -> None:
    if not host:
        raise _refuse("the host is missing")
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name may end in "."
    labels = name.split(".")
    if labels[-1].isascii() and labels[-1].isdigit():
        # a name whose last label is all digits is an IPv4 address (as browsers and
        # resolvers read it), and must be one: 256.1.1.1 or 10.1.1 is a typo, not a name
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise _refuse(f"the host {host!r} is not an IPv4 address (four numbers 0-255)") from None
        return
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise _refuse(f"the host {host!r} is not a valid name") from None
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in ascii_name.split(".")):
        raise _refuse(f"the host {host!r} is not a valid name (letters, digits, '-' between dots)")
