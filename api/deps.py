"""Shared FastAPI dependencies and response helpers for the route modules."""

from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request

from api.runtime import Runtime


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def object_stream(body, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """Stream an S3 response body and always give its connection back."""
    try:
        yield from body.stream(chunk)
    finally:
        body.close()
        body.release_conn()
