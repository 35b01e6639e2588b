"""PATCH bodies: a field left out keeps its value; a field sent as ``null`` clears
it, which only a nullable column can take.

Every field of a PATCH model is optional (``None`` default, so ``exclude_unset``
tells "left out" from "sent"), which would also let ``{"enabled": null}`` through
to a NOT NULL column and fail there as a 500.  :class:`PatchBody` reads which
columns are NOT NULL from the table the body updates, so no field can forget the
rule: ``null`` for one of them is a 422 naming the field.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationInfo, field_validator
from sqlmodel import SQLModel


@cache
def not_null_columns(table: type[SQLModel]) -> frozenset[str]:
    return frozenset(c.name for c in table.__table__.columns if not c.nullable)


class PatchBody(BaseModel):
    #: the table this body updates (fields are matched to its columns by name)
    table: ClassVar[type[SQLModel]]

    @field_validator("*")
    @classmethod
    def _null_only_where_the_column_takes_it(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in not_null_columns(cls.table):
            raise ValueError("不能为 null，不修改请省略该字段 / may not be null; leave the field out to keep its value")
        return value
