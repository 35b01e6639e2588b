"""Shared FastAPI dependencies and response helpers for the route modules."""

from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request

from storage.base import Body

from api.runtime import Runtime


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def object_stream(body: Body, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """A stored body as a response's chunks; its connection goes back however the response ends."""
    with body:
        yield from body.stream(chunk)
