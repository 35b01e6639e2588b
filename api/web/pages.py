"""The responses every page module shares: the redirect after a form, how a refused
change reads, the error pages, and the HTML of the public ``/verify/{package_id}``
check (the REST route answers a browser with it)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.web import i18n
from api.web.render import render


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def problem_text(e: Exception) -> str:
    """A short message for a refused change (pydantic errors as ``field: message``)."""
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(map(str, er['loc'])) or 'form'}: {er['msg']}" for er in e.errors())
    return str(e)


def verify_html(request: Request, facts: dict, status: int) -> HTMLResponse:
    """The public verify page (``GET /verify/{id}`` with ``Accept: text/html``), zh-CN first."""
    return render(request, "verify.html", status=status, facts=facts, user=None,
                  lang_links=[(code, f"/lang/{code}?next={quote(request.url.path, safe='/')}") for code in i18n.LANGUAGES])


def too_many_page(request: Request, retry_after_s: int) -> Response:
    """429 for a browser (the verify page, see api.rate_limit)."""
    resp = render(request, "error.html", status=429, message_key="error.too_many", user=None)
    resp.headers["Retry-After"] = str(retry_after_s)
    return resp


def forbidden_page(request: Request) -> Response:
    return render(request, "error.html", status=403, message_key="error.forbidden")


def csrf_page(request: Request) -> Response:
    return render(request, "error.html", status=403, message_key="error.csrf")


def not_found_page(request: Request, message: str) -> Response:
    return render(request, "error.html", status=404, message_key="error.not_found", detail=message)

