"""Report schemas and files: Arrow schemas from ``schemas/*.schema.json``, atomic Parquet
writing with provenance metadata, and ``run.json``.

Schema file format (``images``, ``studies``)::

    {"name": str, "version": "MAJOR.MINOR.PATCH", "description": str,
     "fields": [{"name": str, "type": TYPE, "nullable": bool, "description": str,
                 "enum": [str, ...]  (optional: the only values a string column may hold)}]}

``TYPE`` is one of ``string``, ``int32``, ``int64``, ``float32``, ``float64``, ``bool``,
``list<string>``. ``run.schema.json`` is a JSON Schema for ``run.json``.

Every file is written next to its final name and moved into place with :func:`os.replace`,
so readers never see a half-written report.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import SpecError

_TYPES: Mapping[str, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "list<string>": pa.list_(pa.string()),
}

#: Key-value metadata keys every report file carries (values are UTF-8 strings).
META_PREFIX = "batchfrac."


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


def _schema_text(filename: str) -> str:
    return (files("batchfrac") / "schemas" / filename).read_text(encoding="utf-8")


@functools.cache
def load_schema(name: str) -> ReportSchema:
    """Load and check ``schemas/<name>.schema.json`` (``images`` or ``studies``)."""
    doc = json.loads(_schema_text(f"{name}.schema.json"))
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


@functools.cache
def run_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``run.json``."""
    doc: dict[str, Any] = json.loads(_schema_text("run.schema.json"))
    return doc


@dataclass(frozen=True, slots=True)
class Provenance:
    """What every report file carries in its key-value metadata (DESIGN invariant 4)."""

    run_id: str
    bundle_id: str
    software_version: str
    spec_id: str
    spec: Mapping[str, Any]
    weights_sha256: Mapping[str, str]
    config_id: str
    demo_notice: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def metadata(self, schema: ReportSchema) -> dict[str, str]:
        """Key-value metadata for a file of ``schema``."""
        meta = {
            "schema": schema.name,
            "schema_version": schema.version,
            "run_id": self.run_id,
            "bundle_id": self.bundle_id,
            "software_version": self.software_version,
            "spec_id": self.spec_id,
            "spec": json.dumps(self.spec, sort_keys=True),
            "weights_sha256": json.dumps(self.weights_sha256, sort_keys=True),
            "config_id": self.config_id,
            **self.extra,
        }
        if self.demo_notice:
            meta["demo_notice"] = self.demo_notice
        return {META_PREFIX + k: v for k, v in meta.items()}


def file_metadata(path: Path) -> dict[str, str]:
    """The ``batchfrac.*`` key-value metadata of a Parquet file, prefix removed."""
    raw = pq.read_schema(path).metadata or {}
    prefix = META_PREFIX.encode()
    return {k[len(prefix) :].decode(): v.decode() for k, v in raw.items() if k.startswith(prefix)}


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
            bad = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, pa.array(spec.enum))))
            if pc.any(bad).as_py():
                found = pc.unique(pc.filter(column, bad)).to_pylist()
                raise SpecError(f"{schema.name}.{spec.name}: values {found} not in {spec.enum}")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, fsync it, move it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def write_parquet(
    table: pa.Table, path: Path, schema: ReportSchema, provenance: Provenance
) -> Path:
    """Check ``table`` against ``schema`` and write it atomically with provenance metadata."""
    check_table(table, schema)
    meta = {**(table.schema.metadata or {}), **_encode(provenance.metadata(schema))}
    table = table.replace_schema_metadata(meta)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _encode(meta: Mapping[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in meta.items()}


def write_run_json(path: Path, doc: Mapping[str, Any]) -> Path:
    """Validate ``doc`` against ``schemas/run.schema.json`` and write it atomically."""
    import jsonschema

    try:
        jsonschema.validate(dict(doc), run_json_schema())
    except jsonschema.ValidationError as exc:
        raise SpecError(f"run.json does not match its schema: {exc.message}") from exc
    return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
