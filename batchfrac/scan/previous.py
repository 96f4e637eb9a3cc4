"""``--previous LASTNIGHT``: reuse the rows of a previous night's reports for unchanged files.

An archive grows by a few hundred studies a day; reports go to a new dated folder each
night. With ``--previous`` the cost of a night follows the day's new files: a file whose
(path, size, mtime) is unchanged since LASTNIGHT keeps its row, read from LASTNIGHT's
``images.parquet``; only new or changed files are read. The previous reports are used only
when they can be trusted:

- ``run.json`` exists and validates against its schema (a finished run);
- ``images.parquet`` reads back whole and matches the images schema of this version;
- it was made with the same settings (its ``config_id``: bundle id, preprocessing, every
  option that changes a row, schema version).

Otherwise the night is a full scan and the reason is said (log and terminal). Error rows
of the previous night are read again unless asked otherwise. Tonight's reports hold the
whole archive, so they are a valid ``--previous`` for tomorrow.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ..report.parquet import file_metadata
from .resume import FileKey, Ledger, read_keys

if TYPE_CHECKING:
    import pyarrow as pa

if TYPE_CHECKING:
    from .config import ScanConfig
    from .resume import Ledger

log = logging.getLogger(__name__)

RUN_JSON = "run.json"
IMAGES = "images.parquet"


@dataclass(frozen=True)
class PreviousNight:
    """A previous night's reports that passed every check."""

    path: Path
    run_id: str
    images: Path
    keys: list[tuple[FileKey, str]]  # ((path, size, mtime_ns), status) of every row


class PreviousUnusable(Exception):
    """Why a previous night's reports cannot be reused (the night is then a full scan)."""


def load_previous(path: Path, config_id: str) -> PreviousNight:
    """Check ``path``'s reports and read their row keys.

    Raises :class:`PreviousUnusable` with a one-line reason when they cannot be trusted
    or were made with other settings.
    """
    run_file, images = path / RUN_JSON, path / IMAGES
    if not path.is_dir():
        raise PreviousUnusable(f"{path} is not a folder")
    try:
        run = json.loads(run_file.read_text(encoding="utf-8"))
        _validate_run(run)
    except FileNotFoundError:
        raise PreviousUnusable(f"{run_file} is missing (that scan did not finish)") from None
    except (OSError, ValueError) as exc:
        raise PreviousUnusable(f"{run_file} is not a valid run.json: {exc}") from None
    try:
        meta = file_metadata(images)
        keys = read_keys(images)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types; any means "damaged"
        raise PreviousUnusable(f"{images} cannot be read back: {exc}") from None
    if meta.get("run_id") != run["run_id"]:
        raise PreviousUnusable(f"{images} does not belong to run {run['run_id']} of {run_file}")
    if meta.get("config_id") != config_id or run.get("config_id") != config_id:
        raise PreviousUnusable(
            f"{path} was scanned with another bundle, preprocessing, options or schema "
            f"version (config {run.get('config_id')}, tonight {config_id})"
        )
    return PreviousNight(path, str(run["run_id"]), images, keys)


def _validate_run(run: object) -> None:
    import jsonschema

    from ..report.schema import check_run_json

    try:
        check_run_json(run)
    except jsonschema.ValidationError as exc:
        raise ValueError(exc.message) from None


def use_previous(config: ScanConfig, ledger: Ledger, config_id: str) -> PreviousNight | str | None:
    """Add the previous night's rows to the ledger (``--previous``): the night, or why its
    reports were not used (then every file is read), or ``None`` without ``--previous``."""
    if config.previous is None:
        return None
    try:
        night = load_previous(config.previous, config_id)
    except PreviousUnusable as exc:
        log.warning("--previous %s not used, scanning every file: %s", config.previous, exc)
        return str(exc)
    added = ledger.add_previous(night.images, night.keys, errors=config.previous_errors)
    log.info("--previous %s (run %s): %d files to reuse if unchanged",
             config.previous, night.run_id, added)  # fmt: skip
    return night


def previous_summary(night: PreviousNight, images: pa.Table) -> dict[str, object]:
    """``run.json``'s ``previous``: which run, and how many of its files are gone tonight."""
    tonight = set(images.column("path").to_pylist())
    removed = {key[0] for key, _status in night.keys} - tonight
    return {"used": True, "run_id": night.run_id, "path": str(night.path),
            "files_removed": len(removed)}  # fmt: skip
