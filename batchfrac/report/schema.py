"""Report schemas: Arrow schemas from ``schemas/*.schema.json``, and checks of tables against them.

Schema file format (``images``, ``studies``)::

    {"name": str, "version": "MAJOR.MINOR.PATCH", "description": str,
     "fields": [{"name": str, "type": TYPE, "nullable": bool, "description": str,
                 "enum": [str, ...]  (optional: the only values a string column, or the
                                      items of a list<string> column, may hold)}]}

``TYPE`` is one of ``string``, ``int32``, ``int64``, ``float32``, ``float64``, ``bool``,
``list<string>``. ``run.schema.json`` is a JSON Schema for ``run.json``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
import pyarrow as pa
import pyarrow.compute as pc

from .. import schemas
from ..errors import SpecError

#: The JSON Schema of ``run.json``.
RUN_SCHEMA = "run.schema.json"

_TYPES: Mapping[str, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "list<string>": pa.list_(pa.string()),
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One column of a report schema."""

    name: str
    type: str
    nullable: bool
    description: str
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ReportSchema:
    """A report schema loaded from ``schemas/<name>.schema.json``."""

    name: str
    version: str
    description: str
    fields: tuple[FieldSpec, ...]

    @property
    def arrow(self) -> pa.Schema:
        """The Arrow schema (field descriptions as field metadata)."""
        return pa.schema(
            [
                pa.field(f.name, _TYPES[f.type], f.nullable, {"description": f.description})
                for f in self.fields
            ]
        )

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


@functools.cache
def load_schema(name: str) -> ReportSchema:
    """Load and check ``schemas/<name>.schema.json`` (``images`` or ``studies``)."""
    doc = schemas.load(f"{name}.schema.json")
    try:
        fields = tuple(
            FieldSpec(
                name=f["name"],
                type=f["type"],
                nullable=bool(f["nullable"]),
                description=f["description"],
                enum=tuple(f["enum"]) if "enum" in f else None,
            )
            for f in doc["fields"]
        )
        schema = ReportSchema(doc["name"], doc["version"], doc["description"], fields)
    except (KeyError, TypeError) as exc:
        raise SpecError(f"schemas/{name}.schema.json is malformed: missing {exc}") from exc
    unknown = [f.type for f in fields if f.type not in _TYPES]
    if schema.name != name or unknown or len(set(schema.names)) != len(fields):
        raise SpecError(
            f"schemas/{name}.schema.json: name must be {name!r}, types one of {sorted(_TYPES)} "
            f"(got unknown {unknown}), field names unique"
        )
    return schema


def run_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``run.json`` (do not modify it)."""
    return schemas.load(RUN_SCHEMA)


def check_run_json(doc: object) -> None:
    """Raise the most relevant :class:`jsonschema.ValidationError` of ``doc`` against
    :func:`run_json_schema`, as :func:`jsonschema.validate` does, but without checking
    the schema itself each time (~0.1 s; the tests check every shipped schema once)."""
    error = jsonschema.exceptions.best_match(schemas.validator(RUN_SCHEMA).iter_errors(doc))
    if error is not None:
        raise error


class _Row(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


def rows_to_table(rows: Iterable[_Row], schema: ReportSchema) -> pa.Table:
    """An Arrow table of ``rows`` (objects with ``as_dict()``) conforming to ``schema``."""
    table = pa.Table.from_pylist([r.as_dict() for r in rows], schema=schema.arrow)
    check_table(table, schema)
    return table


def check_table(table: pa.Table, schema: ReportSchema) -> None:
    """Raise :class:`SpecError` unless ``table`` has the schema's columns, nulls and values."""
    if not table.schema.equals(schema.arrow, check_metadata=False):
        raise SpecError(f"table does not match the {schema.name} schema:\n{table.schema}")
    for spec in schema.fields:
        column = table.column(spec.name)
        if not spec.nullable and column.null_count:
            raise SpecError(
                f"{schema.name}.{spec.name}: {column.null_count} nulls in a required column"
            )
        if spec.enum is not None:
            if spec.type == "list<string>":
                column = pc.list_flatten(column)
            bad = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, pa.array(spec.enum))))
            if pc.any(bad).as_py():
                found = pc.unique(pc.filter(column, bad)).to_pylist()
                raise SpecError(f"{schema.name}.{spec.name}: values {found} not in {spec.enum}")
