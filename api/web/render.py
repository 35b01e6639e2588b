"""Jinja2 rendering for the web UI: one autoescaping environment, the per-request
context (language, user, CSRF token, navigation) and the security headers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from labwitness.url_secrets import redact_text
from recorder.audio_transcode import shown_codec

from api import deps
from api.web import i18n
from api.web.session import LANG_COOKIE, WebUser, current_user

TEMPLATES = Path(__file__).parent / "templates"

# Scripts and styles come only from /static (vendored htmx, app.js, app.css): no inline
# script or style anywhere, so the policy needs no 'unsafe-inline'.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}

# (path, message key, roles besides admin that see it)
NAV = [
    ("/ui/cameras", "nav.cameras", {"inspector", "operations"}),
    ("/ui/discovery", "nav.discovery", set()),
    ("/ui/areas", "nav.areas", set()),
    ("/ui/equipment", "nav.equipment", set()),
    ("/ui/search", "nav.search", {"inspector"}),
    ("/ui/health", "nav.health", {"operations"}),
    ("/ui/compliance", "nav.compliance", {"operations"}),
    ("/ui/audit", "nav.audit", set()),
]
HOME = {"admin": "/ui/cameras", "inspector": "/ui/search", "operations": "/ui/health"}


def language(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "")
    return lang if lang in i18n.LANGUAGES else i18n.DEFAULT


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, digits=1: "—" if v is None else f"{v * 100:.{digits}f}%"
    env.filters["tojson_attr"] = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    env.filters["bytes"] = human_bytes
    env.filters["scrub"] = scrub
    env.filters["fromjson"] = lambda v: json.loads(v) if v else []
    env.filters["bilingual"] = bilingual
    env.filters["summary"] = summary
    env.filters["audio_codec"] = lambda v: shown_codec(v or "")
    return env


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def scrub(text) -> str:
    """Belt and braces: no URL's password (``user:password@``, ``?password=``) ever
    reaches a page (the recorder and the registry already redact what they report)."""
    return redact_text(_USERINFO.sub(r"\1***@", "" if text is None else str(text)))


def bilingual(text, lang: str) -> str:
    """Messages from the core are "中文 / English"; show the part of the page's language."""
    text = "" if text is None else str(text)
    if " / " not in text:
        return text
    zh, en = text.split(" / ", 1)
    if lang == "zh-CN":
        return zh
    # "cam-1: 无新录像 / no footage ..." keeps its "cam-1: " prefix in English too
    head = zh.split(": ", 1)[0] if ": " in zh else ""
    if head and head.isascii() and not en.startswith(head):
        return f"{head}: {en}"
    return en


def summary(d) -> list[tuple[str, str]]:
    """A job run's summary as short ``key: value`` pairs (scalars only; times and ids left out)."""
    if not isinstance(d, dict):
        return []
    out = []
    for k, v in sorted(d.items()):
        if isinstance(v, (dict, list)) or k.endswith("_ms") or k in ("run_id", "status"):
            continue
        out.append((k, f"{v:.2f}" if isinstance(v, float) else str(v)))
    return out[:12]


GOOD = {"recording", "ok", "done", "true"}
WARN = {"warning", "reconnecting", "starting", "running", "stalled", "disabled", "idle", "info", "not_recording"}


def labeler(lang: str):
    def tl(prefix: str, value, badge: bool = False) -> str | Markup:
        v = str(value).lower() if isinstance(value, bool) else str(value)
        key = f"{prefix}.{v}"
        label = i18n.t(lang, key) if i18n.has(key) else v
        if not badge:
            return label
        cls = "ok" if v in GOOD else "warn" if v in WARN else "bad"
        return Markup('<span class="badge {} {}-{}">{}</span>').format(cls, prefix, v, label)

    return tl


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class Clock:
    """Times shown to people, in the lab's time zone (settings.timezone)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def _dt(self, v) -> datetime | None:
        if v is None or v == "":
            return None
        if isinstance(v, (int, float)):
            return datetime.fromtimestamp(v / 1000, timezone.utc)
        if isinstance(v, str):
            v = datetime.fromisoformat(v.replace("Z", "+00:00"))
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)

    def dt(self, v, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        d = self._dt(v)
        return "—" if d is None else d.astimezone(self.tz).strftime(fmt)

    def time(self, v) -> str:
        return self.dt(v, "%H:%M:%S")

    def input(self, v) -> str:
        """For ``<input type=datetime-local>``."""
        return self.dt(v, "%Y-%m-%dT%H:%M") if v is not None else ""


def render(request: Request, template: str, status: int = 200, user: WebUser | None = None, **ctx) -> HTMLResponse:
    lang = language(request)
    tz_name = deps.settings(request).timezone
    if user is None:
        user = getattr(request.state, "web_user", None) or current_user(request)
    flash = user.session.take_flash() if user is not None else []  # from the database: set on any node

    def t(key: str, **kw) -> str:
        return i18n.t(lang, key, **kw)

    nav = [(href, key) for href, key, roles in NAV if user is not None and user.may(*roles)]
    body = environment().get_template(template).render(
        request=request, lang=lang, t=t, user=user, csrf=user.session.csrf if user else "", nav=nav,
        path=request.url.path, here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        clock=Clock(ZoneInfo(tz_name)), tz_name=tz_name, flash=flash, Markup=Markup,
        languages=i18n.LANGUAGES, tl=labeler(lang), has=i18n.has, **ctx)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def fragment(request: Request, template: str, user: WebUser | None, status: int = 200, **ctx) -> HTMLResponse:
    """An htmx partial: same context, no layout."""
    return render(request, template, status=status, user=user, **ctx)
