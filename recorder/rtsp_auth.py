"""RTSP authentication: Basic or Digest (RFC 2617, MD5) with the camera URL's credentials (pure).

:class:`recorder.rtsp_conn.RtspConnection` answers a 401 once through
:meth:`Auth.challenge`, then signs every request with :meth:`Auth.header`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re


class Auth:
    """Basic or Digest (RFC 2617, MD5) credentials answering a camera's challenge."""

    def __init__(self, user: str | None, password: str | None) -> None:
        self.user = user
        self.password = password or ""
        self.scheme = ""
        self.params: dict[str, str] = {}
        self._nc = 0

    def challenge(self, values: list[str]) -> bool:
        """Take the WWW-Authenticate headers; False if there is nothing to answer with."""
        if self.user is None:
            return False
        digest = next((v for v in values if v.lower().startswith("digest")), None)
        if digest is not None:
            self.scheme = "digest"
            self.params = {k.lower(): (q if q else u) for k, q, u in
                           re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))', digest[6:])}
            self._nc = 0
            alg = self.params.get("algorithm", "MD5").upper()
            return alg in ("MD5", "")
        if any(v.lower().startswith("basic") for v in values):
            self.scheme = "basic"
            return True
        return False

    def header(self, method: str, uri: str) -> str | None:
        """The ``Authorization`` value for one request; None before a challenge was answered."""
        if self.scheme == "basic":
            return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if self.scheme == "digest":
            return self.digest(method, uri, os.urandom(8).hex())
        return None

    def digest(self, method: str, uri: str, cnonce: str) -> str:
        p = self.params
        realm, nonce = p.get("realm", ""), p.get("nonce", "")
        h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731  (MD5 is what RFC 2617 digest is)
        ha1, ha2 = h(f"{self.user}:{realm}:{self.password}"), h(f"{method}:{uri}")
        parts = [f'username="{self.user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
        if "auth" in qops:
            self._nc += 1
            nc = f"{self._nc:08x}"
            resp = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            parts += [f'response="{resp}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            parts.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
        if "opaque" in p:
            parts.append(f'opaque="{p["opaque"]}"')
        parts.append("algorithm=MD5")
        return "Digest " + ", ".join(parts)
