"""RFC 9457 problem+json for every error the API returns."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from labwitness.errors import (
    ConfigError,
    ConflictError,
    DiscoveryError,
    IndexUnavailableError,
    LabwitnessError,
    NotFoundError,
    StorageUnavailableError,
    StreamError,
)

log = logging.getLogger(__name__)

STATUS = {
    NotFoundError: 404,
    ConflictError: 409,
    StreamError: 422,
    DiscoveryError: 422,  # what reaches the API is a bad scan request (hosts, CIDR); device errors are per result  # only ever raised to the API by validating a camera URL
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
        if status >= 500 and status != 503:
            log.error("request %s failed", request.url.path, exc_info=exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else getattr(exc, "headers", None)  # e.g. Retry-After
        resp = problem(status, type(exc).__name__, str(exc), f"https://labwitness.invalid/problems/{exc.code}")
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

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        return problem(422, "请求参数无效 / invalid request", str(exc))
