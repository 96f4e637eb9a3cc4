"""The schemas of what batchfrac reads and writes, shipped with the package.

JSON Schemas: ``bundle.schema.json`` (a model bundle's ``bundle.json``),
``preprocess_spec.schema.json`` (the preprocessing spec inside it) and ``run.schema.json``
(a scan's ``run.json``). Column lists: ``images.schema.json`` and ``studies.schema.json``,
read by :func:`batchfrac.report.schema.load_schema` into Arrow schemas.

In the repository ``batchfrac/schemas`` is a link to the top-level ``schemas/`` folder,
where readers of the source find them; a wheel holds the files themselves.
:func:`validator` is built once per process and does not check the schema against its
meta-schema on each use (about 0.1 s each time); the tests check every shipped schema once.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

import jsonschema


def text(filename: str) -> str:
    """The text of the shipped schema file ``filename`` (e.g. ``run.schema.json``)."""
    return (files(__name__) / filename).read_text(encoding="utf-8")


@functools.cache
def load(filename: str) -> dict[str, Any]:
    """The parsed schema file ``filename``, read once per process (do not modify it)."""
    doc: dict[str, Any] = json.loads(text(filename))
    return doc


@functools.cache
def validator(filename: str) -> jsonschema.protocols.Validator:
    """A validator of the JSON Schema ``filename``, for the draft the schema names."""
    schema = load(filename)
    return jsonschema.validators.validator_for(schema)(schema)
