"""Parquet report files: written atomically, checked against their schema, with provenance.

Every file carries key-value metadata under :data:`META_PREFIX` (README, invariant 4): the
schema and its version, the run id, bundle id, software version, preprocessing spec and
the sha256 of every weight file, so a row can always be traced to what produced it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import REPORT_FILE_MODE, atomic_write
from .schema import ReportSchema, check_table

#: Key-value metadata keys every report file carries (values are UTF-8 strings).
META_PREFIX = "batchfrac."


@dataclass(frozen=True, slots=True)
class Provenance:
    """What every report file carries in its key-value metadata (README, invariant 4)."""

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


def write_parquet(
    table: pa.Table, path: Path, schema: ReportSchema, provenance: Provenance
) -> Path:
    """Check ``table`` against ``schema`` and write it atomically with provenance metadata
    (mode :data:`~batchfrac.atomic.REPORT_FILE_MODE`: rows hold identifiers)."""
    check_table(table, schema)
    meta = {**(table.schema.metadata or {}), **_encode(provenance.metadata(schema))}
    table = table.replace_schema_metadata(meta)
    return atomic_write(
        path, lambda tmp: pq.write_table(table, tmp, compression="zstd"), mode=REPORT_FILE_MODE
    )


def _encode(meta: Mapping[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in meta.items()}
