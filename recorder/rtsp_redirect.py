"""Where an RTSP redirect (3xx ``Location``) leads, and whether the camera's credentials follow (pure).

:class:`recorder.rtsp_native.NativeRtspInput` follows at most :data:`MAX_HOPS`
redirects of OPTIONS or DESCRIBE.  The rules, as an attacker on the LAN would
test them:

* ``Location`` may be absolute (``rtsp://`` or ``rtsps://``) or relative to the
  URL that was redirected (RFC 3986 resolution); any other scheme is refused.
* The credentials of the camera URL are sent on only to the same host and port
  (and never from ``rtsps://`` down to plain ``rtsp://``, where they would
  cross the network in clear).  A redirect elsewhere is followed without
  them; if the new server then asks for credentials the session fails with
  ``auth_failed`` and a message that says why none were sent.
* User info inside ``Location`` is ignored: a redirect does not choose which
  credentials we use.
* The target must pass the camera URL rule (:func:`recorder.rtsp_url.check_rtsp_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit

from labwitness.errors import StreamError, ValidationError
from labwitness.url_secrets import redact_url
from recorder.rtsp_url import check_rtsp_url

MAX_HOPS = 3
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}


@dataclass(frozen=True)
class Hop:
    url: str  # where to connect next, with the credentials if they may follow
    credentials_kept: bool
    why_not: str  # "" when kept or when there were none


def _origin(url: str) -> tuple[str, str, int]:
    p = urlsplit(url)
    return p.scheme.lower(), (p.hostname or "").lower(), p.port or _DEFAULT_PORTS.get(p.scheme.lower(), 0)


def redirect_target(current: str, location: str) -> Hop:
    """The URL to open after ``current`` (with its credentials, if any) answered 3xx with ``location``."""
    cur = urlsplit(current)
    # urljoin resolves relative references only for schemes it knows: join on an http
    # spelling of the current URL, then give a relative result the current scheme back
    base = cur._replace(scheme="http", netloc=cur.netloc.rpartition("@")[2]).geturl()
    target = urlsplit(urljoin(base, location.strip()))
    if target.scheme == "http" and not location.strip().lower().startswith("http:"):
        target = target._replace(scheme=cur.scheme)
    scheme = target.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise StreamError("stream_error", f"摄像机重定向到不支持的地址 / the camera redirected to an unsupported URL "
                                          f"({scheme or 'no'} scheme; rtsp:// or rtsps:// only)")
    target = target._replace(netloc=target.netloc.rpartition("@")[2])  # user info of Location: ignored
    bare = target.geturl()
    try:
        check_rtsp_url(bare)
    except ValidationError as e:
        raise StreamError("stream_error", f"摄像机重定向到无效地址 / the camera redirected to an invalid URL: {e}") from e
    if cur.username is None:
        return Hop(bare, False, "")
    (s0, h0, p0), (s1, h1, p1) = _origin(current), _origin(bare)
    if (h0, p0) != (h1, p1):
        return Hop(bare, False, f"重定向到其他主机，未发送凭据 / redirected to another host ({redact_url(bare)}): "
                                "the camera's credentials were not sent there")
    if s0 == "rtsps" and s1 == "rtsp":
        return Hop(bare, False, "重定向从 rtsps 降级到 rtsp，未发送凭据 / redirected from rtsps:// to plain rtsp://: "
                                "the credentials were not sent in clear")
    userinfo = quote(unquote(cur.username), safe="")
    if cur.password is not None:
        userinfo += ":" + quote(unquote(cur.password), safe="")
    return Hop(target._replace(netloc=f"{userinfo}@{target.netloc}").geturl(), True, "")
