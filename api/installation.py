"""What every process on one data directory must agree on: ``DATA_DIR/installation.json``.

Today one fact: the public base URL (what evidence packages' QR codes and verify
links point at).  ``LABWITNESS_PUBLIC_BASE_URL`` (or ``public_base_url`` in the
config file) wins when set.  Otherwise ``serve`` and ``demo`` write the URL they
are served at here when they start, and every other command (``labwitness export``
beside a running demo on port 8080, say) reads it, so the CLI and the service put
the same URL into packages.  With neither, ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from api.settings import Settings

STATE = "installation.json"
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


def write_json(path: Path, doc: dict, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``doc`` (readers see the old or the new file, never half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # one per writer
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    """A small state file's object; {} when it is missing or damaged (its facts then take their defaults)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_state(data_dir: Path) -> dict:
    return read_json(data_dir / STATE)


def served_url(host: str, port: int, https: bool = False) -> str:
    """The URL a service bound to ``host:port`` is reached at from this machine."""
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"  # bound everywhere: loopback reaches it; set LABWITNESS_PUBLIC_BASE_URL for the LAN name
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}"


def public_base_url(settings: Settings) -> str:
    """Configured URL, else the one serve/demo last announced for this data directory, else the default."""
    url = settings.public_base_url or read_state(settings.data_dir).get("public_base_url") or DEFAULT_PUBLIC_BASE_URL
    return url.rstrip("/")


def announce_served_url(settings: Settings) -> str:
    """serve/demo at start: unless a URL is configured, the one they are served at becomes the installation's."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    url = served_url(settings.host, settings.port, https=settings.ssl_certfile is not None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    write_json(settings.data_dir / STATE, {**read_state(settings.data_dir), "public_base_url": url})
    return url
