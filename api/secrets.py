"""Camera credentials encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

Both kinds: the password of ``rtsp://user:password@host`` (``Camera.password_enc``)
and the values of secret query parameters, ``?user=u&password=…``
(``Camera.url_secrets_enc``; the stored URL keeps ``***`` in their place, see
``labwitness.url_secrets``).

The key comes from ``LABWITNESS_CREDENTIALS_KEY`` (a Fernet key, e.g. from
``python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'``);
when unset, one is generated on first start into ``DATA_DIR/credentials.key``
(mode 0600) — fine for a single box, but production should keep the key out
of the data directory and back it up: without it stored passwords are lost
(the cameras' footage is not).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken

from index.models import Camera
from labwitness.errors import ConfigError
from labwitness.private_fs import private_dir, private_file
from labwitness.url_secrets import restore_query_secrets, split_query_secrets


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
            private_dir(data_dir)
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key())
        return cls(private_file(f).read_bytes().strip())

    def encrypt(self, secret: str | None) -> str | None:
        return self._f.encrypt(secret.encode()).decode() if secret else None

    def decrypt(self, token: str | None) -> str | None:
        if not token:
            return None
        try:
            return self._f.decrypt(token.encode()).decode()
        except InvalidToken as e:
            raise ConfigError("无法解密摄像机密码：密钥不匹配 / cannot decrypt a camera password: wrong credentials key") from e

    def seal_url(self, url: str, stored: str | None = None) -> tuple[str, str | None]:
        """``(URL to store, encrypted query secrets)``: each secret query value becomes
        ``***`` in the URL and goes, encrypted, into the second part. A ``***`` already
        in ``url`` (a stored URL pasted back) keeps the value ``stored`` held for it."""
        masked, secrets = split_query_secrets(restore_query_secrets(url, self.query_secrets(stored)))
        return masked, self.encrypt(json.dumps(secrets)) if secrets else None

    def query_secrets(self, stored: str | None) -> list[tuple[str, str]]:
        return [(name, value) for name, value in json.loads(self.decrypt(stored) or "[]")]

    def recording_url(self, cam: Camera) -> str:
        """The URL a recorder opens: the camera's stored URL with every secret put back."""
        url = restore_query_secrets(cam.rtsp_url, self.query_secrets(cam.url_secrets_enc))
        return with_credentials(url, cam.username, self.decrypt(cam.password_enc))

    def sub_stream_url(self, cam: Camera) -> str:
        """The sub stream's URL with its secrets and the camera's credentials put back ("": none)."""
        if not cam.sub_rtsp_url:
            return ""
        url = restore_query_secrets(cam.sub_rtsp_url, self.query_secrets(cam.sub_url_secrets_enc))
        return with_credentials(url, cam.username, self.decrypt(cam.password_enc))


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


AUDIT_KEY_FILE = "audit-mac.key"


def audit_key(data_dir: Path) -> bytes:
    """The installation's audit-log HMAC key (``index.audit``): 32 random bytes generated on
    first use into ``DATA_DIR/audit-mac.key`` (0600), outside the database, so that whoever
    can only write the database cannot rewrite the audit chain consistently.  Back it up with
    the data directory's other keys: without it the chain's MACs cannot be checked."""
    f = Path(data_dir) / AUDIT_KEY_FILE
    if not f.exists():
        private_dir(data_dir)
        try:
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process generated it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(os.urandom(32).hex())
                out.flush()
                os.fsync(out.fileno())
    text = private_file(f).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 32:
        raise ConfigError(f"审计密钥文件无效 / audit key file {f} is not 64 hex digits; restore it from the backup")
    return key
