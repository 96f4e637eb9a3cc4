"""``run.json``: what one scan did, validated against ``schemas/run.schema.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..errors import SpecError
from .schema import run_json_schema


def write_run_json(path: Path, doc: Mapping[str, Any]) -> Path:
    """Validate ``doc`` against ``schemas/run.schema.json`` and write it atomically."""
    import jsonschema

    try:
        jsonschema.validate(dict(doc), run_json_schema())
    except jsonschema.ValidationError as exc:
        raise SpecError(f"run.json does not match its schema: {exc.message}") from exc
    return write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
