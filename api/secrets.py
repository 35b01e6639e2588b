"""Camera credentials encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``LABWITNESS_CREDENTIALS_KEY`` (a Fernet key, e.g. from
``python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'``);
when unset, one is generated on first start into ``DATA_DIR/credentials.key``
(mode 0600) — fine for a single box, but production should keep the key out
of the data directory and back it up: without it stored passwords are lost
(the cameras' footage is not).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken

from labwitness.errors import ConfigError


class CredentialCipher:
    def __init__(self, key: bytes) -> None:
        try:
            self._f = Fernet(key)
        except (ValueError, TypeError) as e:
            raise ConfigError("LABWITNESS_CREDENTIALS_KEY 不是有效的 Fernet 密钥 / is not a valid Fernet key") from e

    @classmethod
    def from_settings(cls, key: str | None, data_dir: Path) -> "CredentialCipher":
        if key:
            return cls(key.encode())
        f = data_dir / "credentials.key"
        if not f.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key())
        return cls(f.read_bytes().strip())

    def encrypt(self, secret: str | None) -> str | None:
        return self._f.encrypt(secret.encode()).decode() if secret else None

    def decrypt(self, token: str | None) -> str | None:
        if not token:
            return None
        try:
            return self._f.decrypt(token.encode()).decode()
        except InvalidToken as e:
            raise ConfigError("无法解密摄像机密码：密钥不匹配 / cannot decrypt a camera password: wrong credentials key") from e


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``rtsp://u:p@host/x`` -> (``rtsp://host/x``, u, p): passwords are never stored in URLs."""
    p = urlsplit(url)
    if p.username is None and p.password is None:
        return url, None, None
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{p.port}" if p.port else "")
    return p._replace(netloc=netloc).geturl(), unquote(p.username or ""), unquote(p.password) if p.password is not None else None


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    if not username:
        return url
    p = urlsplit(url)
    cred = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
    return p._replace(netloc=f"{cred}@{p.netloc.rsplit('@', 1)[-1]}").geturl()
