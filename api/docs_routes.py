"""The API docs (Swagger UI at ``/docs``) and ``/favicon.ico``, served from the package.

FastAPI's own ``/docs`` loads Swagger UI from a CDN, so in a lab without internet
access it is a blank page.  Swagger UI is vendored in ``api/web/static/swagger-ui/``
(swagger-ui-dist 5.35.0 from the npm registry, Apache-2.0: LICENSE and NOTICE beside
it); this page loads only those same-origin files, turns off Swagger's online
validator badge, and says so to the browser with a Content-Security-Policy.  ReDoc
is not offered (one docs page is enough, and it would be another 1 MB vendored).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).parent / "web" / "static"
SWAGGER_JS = "/static/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = "/static/swagger-ui/swagger-ui.css"
FAVICON = "/favicon.ico"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _csp(html: str) -> str:
    """Same origin only; Swagger's one inline start-up script is allowed by its hash."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in _INLINE_SCRIPT.findall(html))
    # Swagger UI (React) sets style attributes, hence 'unsafe-inline' for styles only
    return (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def install(app: FastAPI) -> None:
    """Add ``/docs`` and ``/favicon.ico`` (create the app with ``docs_url=None, redoc_url=None``)."""

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} — API",
            swagger_js_url=root + SWAGGER_JS, swagger_css_url=root + SWAGGER_CSS, swagger_favicon_url=root + FAVICON,
            swagger_ui_parameters={"validatorUrl": None},  # the default posts the schema to validator.swagger.io
        )
        html = page.body.decode()
        return HTMLResponse(html, headers={"Content-Security-Policy": _csp(html), "X-Content-Type-Options": "nosniff"})

    @app.get(FAVICON, include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=86400"})
