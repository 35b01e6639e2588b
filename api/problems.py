"""RFC 9457 problem+json for every error the API returns.

The project's own errors (:mod:`labwitness.errors`) map to their status by
class: :class:`ValidationError` (bad input) is 422, and it is the only kind of
``ValueError`` that is; a camera the API asked on the caller's behalf that failed
(:class:`DeviceError`: unreachable, credentials refused, a setting refused) is 502.
Anything else that escapes a route is a bug: a 500
problem carrying an ``error_id`` that is logged with the traceback, so what a
client reports can be found in the log — and no internal detail (a server path,
a SQL error) reaches the client.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labwitness.errors import (
    ConfigError,
    ConflictError,
    DeviceError,
    DiscoveryError,
    IndexUnavailableError,
    LabwitnessError,
    NotFoundError,
    StorageUnavailableError,
    StreamError,
    ValidationError,
)

log = logging.getLogger(__name__)

STATUS = {
    ValidationError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    StreamError: 422,
    # before DiscoveryError (its base): a camera asked for the API's caller (its clock, NTP) failed
    DeviceError: 502,
    DiscoveryError: 422,  # what reaches the API is a bad scan request (hosts, CIDR); device errors are per result
    IndexUnavailableError: 503,
    StorageUnavailableError: 503,
    ConfigError: 400,
}


def problem(status: int, title: str, detail: str = "", type_: str = "about:blank", **extra) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def install(app: FastAPI) -> None:
    @app.exception_handler(LabwitnessError)
    async def _lw(request: Request, exc: LabwitnessError) -> JSONResponse:
        status = getattr(exc, "status", None) or next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
        extra = {"error_id": _log_failure(request, exc)} if status >= 500 and status not in (502, 503) else {}
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else getattr(exc, "headers", None)  # e.g. Retry-After
        resp = problem(status, type(exc).__name__, str(exc), f"https://labwitness.invalid/problems/{exc.code}", **extra)
        if headers:
            resp.headers.update(headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return problem(422, "请求参数无效 / invalid request", "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
                       errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    app.add_middleware(UnexpectedErrors)


def _log_failure(request: Request, exc: BaseException) -> str:
    error_id = uuid.uuid4().hex[:16]
    log.error("request %s %s failed (error id %s)", request.method, request.url.path, error_id, exc_info=exc)
    return error_id


def internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """A bug answered: the id is in the body and, with the traceback, in the log; nothing of the exception is sent."""
    error_id = _log_failure(request, exc)
    return problem(500, "内部错误 / internal error",
                   f"服务器内部错误，请将错误编号告知管理员 / internal error; give the administrator the error id {error_id}",
                   error_id=error_id)


class UnexpectedErrors:
    """ASGI middleware: what no exception handler claimed becomes :func:`internal_error`.
    (Starlette's own handler for ``Exception`` answers, then raises again, so the server
    would log a second traceback without the id.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:  # the answer is under way (a stream broke): nothing can replace it now
                raise
            await internal_error(Request(scope), exc)(scope, receive, send)
