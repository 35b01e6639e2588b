"""The host-side checks of ``labwitness doctor``: clock synchronisation, a camera's RTSP port, the serve port.

Each returns ``(level, message)`` with level ``ok``, ``warning``, ``error`` or
``unknown``; the parsers are pure functions of the tools' output, tested table-driven.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from urllib.parse import urlsplit

Level = str  # "ok" | "warning" | "error" | "unknown"

#: what a synchronised chrony reports; anything else in "Leap status" means not synchronised
_CHRONY_OK = "normal"
#: chrony's offset beyond which the clock counts as off even when chrony is synchronised (seconds)
MAX_OFFSET_S = 1.0


def parse_chronyc_tracking(text: str) -> tuple[Level, str]:
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines()) if v}
    leap = fields.get("leap status", "").lower()
    if not leap:
        return "unknown", "chronyc tracking gave no leap status"
    offset = fields.get("system time", "")
    try:
        off_s = float(offset.split()[0])
    except (IndexError, ValueError):
        off_s = 0.0
    if leap != _CHRONY_OK:
        return "warning", f"chrony: {fields.get('leap status')} (not synchronised)"
    if off_s > MAX_OFFSET_S:
        return "warning", f"chrony: synchronised but {offset}"
    return "ok", f"chrony: synchronised to {fields.get('reference id', '?')} ({offset or 'offset unknown'})"


def parse_timedatectl_show(text: str) -> tuple[Level, str]:
    fields = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    sync = fields.get("NTPSynchronized")
    if sync == "yes":
        return "ok", "systemd: NTPSynchronized=yes"
    if sync == "no":
        ntp = fields.get("NTP", "?")
        return "warning", f"systemd: NTPSynchronized=no (NTP={ntp})"
    return "unknown", "timedatectl gave no NTPSynchronized"


def _run(args: list[str]) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def clock_sync() -> tuple[Level, str]:
    """chrony if it answers, else systemd (timesyncd or whatever sets NTPSynchronized), else unknown."""
    out = _run(["chronyc", "-n", "tracking"])
    if out is not None:
        return parse_chronyc_tracking(out)
    out = _run(["timedatectl", "show"])
    if out is not None:
        return parse_timedatectl_show(out)
    return "unknown", "neither chronyc nor timedatectl answered"


def rtsp_options(url: str, timeout: float = 3.0) -> tuple[Level, str]:
    """TCP connect to the camera's RTSP port and send OPTIONS: any RTSP answer (401 too) is reachable."""
    p = urlsplit(url)
    host, port = p.hostname or "", p.port or (322 if p.scheme == "rtsps" else 554)
    target = p._replace(netloc=(f"[{host}]" if ":" in host else host) + f":{port}", query="", fragment="").geturl()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if p.scheme == "rtsps":
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # reachability only, no data read
                s = ctx.wrap_socket(s, server_hostname=host)
            s.settimeout(timeout)
            s.sendall(f"OPTIONS {target} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: labwitness-doctor\r\n\r\n".encode())
            head = s.recv(256).decode("latin-1", "replace")
    except OSError as e:
        return "error", f"{host}:{port} unreachable ({e.strerror or e})"
    if not head.startswith("RTSP/1."):
        return "error", f"{host}:{port} answered, but not RTSP ({head[:40]!r})"
    return "ok", f"{host}:{port} {head.splitlines()[0]}"


def port_status(host: str, port: int, https: bool) -> tuple[Level, str]:
    """Free, or held by a labwitness (its public key list answers): ok.  Held by anything else: error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return "ok", f"{host}:{port} free"
        except OSError:
            pass
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    netloc = f"[{probe_host}]:{port}" if ":" in probe_host else f"{probe_host}:{port}"
    url = f"{'https' if https else 'http'}://{netloc}/.well-known/labwitness-keys.json"  # public: no token needed
    ctx = ssl._create_unverified_context() if https else None  # noqa: S323 -- our own port, identity not the question
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as r:
            body = r.read(2000)
    except urllib.error.HTTPError as e:
        body = e.read(2000)
    except OSError as e:
        return "error", f"{host}:{port} is held by another program ({e})"
    if b"labwitness" in body:
        return "ok", f"{host}:{port} in use by the running labwitness"
    return "error", f"{host}:{port} is held by another program"
