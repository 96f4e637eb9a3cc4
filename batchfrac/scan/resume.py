"""The part-file ledger that makes a scan resumable (README: invariant 2, nothing lost).

Each finished chunk of files becomes one ``OUTDIR/parts/part-<hash>.parquet`` (images
schema, written atomically). The ledger is the set of ``(path, file_size, file_mtime_ns)``
keys found in the parts whose ``config_id`` matches this scan's; ``config_id`` hashes the
model bundle id and every option that changes a row (routing, modalities, pixel cap,
low-confidence threshold, images schema version, the pseudonymisation key's fingerprint).
A re-run therefore skips files already reported for the same input and bundle, and redoes
a file whose size or mtime changed.

Parts written under another ``config_id`` (another bundle, other options) are left in
``parts/`` untouched and never mixed into the reports: that scan is redone from scratch.
The final ``images.parquet`` is assembled from this scan's new parts plus the rows of
old parts whose files this scan found unchanged, sorted by path and frame.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import exclusive_lock, is_our_temp_file, make_report_dir
from ..enums import Status
from ..errors import BatchfracError, SpecError
from ..report.deidentify import ReportPseudonyms
from ..report.parquet import Provenance, file_metadata, write_parquet
from ..report.rows import ImageRow
from ..report.schema import check_table, load_schema, rows_to_table

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
#: Where part files that cannot be read are moved (inside ``parts/``).
DAMAGED_DIR = "damaged"
LOCK_FILE = ".batchfrac.lock"
FileKey = tuple[str, int, int]
_KEY_COLUMNS = ["path", "file_size", "file_mtime_ns"]


class OutdirBusy(BatchfracError):
    """Another scan holds the lock on the output directory."""


def config_id(settings: Mapping[str, object]) -> str:
    """A short stable hash of the settings that change report rows."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def outdir_lock(outdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``outdir`` so two scans never interleave their parts."""
    stack = ExitStack()
    try:
        stack.enter_context(exclusive_lock(outdir / LOCK_FILE, wait=False))
    except BlockingIOError as exc:
        raise OutdirBusy(f"another batchfrac scan is writing to {outdir}") from exc
    with stack:
        yield


class Ledger:
    """Finished work in ``OUTDIR/parts`` for one ``config_id``; also writes new parts.

    ``retry_errors``: files whose rows are ``error`` (a transient ``read_error`` or
    ``timeout``, say) are not taken as done, so the scan reads them again.
    ``pseudonyms``: rows are written pseudonymised, and looked up by pseudonymised path.
    """

    def __init__(
        self,
        outdir: Path,
        config: str,
        *,
        retry_errors: bool = False,
        pseudonyms: ReportPseudonyms | None = None,
    ) -> None:
        self.parts_dir = outdir / PARTS_DIR
        self.config_id = config
        self.retry_errors = retry_errors
        self.pseudonyms = pseudonyms
        self._done: dict[FileKey, Path] = {}  # key -> the Parquet file holding its rows
        self._reused: set[FileKey] = set()
        self._new_parts: list[Path] = []
        self.foreign_parts = 0
        self.old_parts = 0
        self.damaged_parts = 0
        self.retried = 0

    def load(self) -> Ledger:
        """Read the keys of every readable part of this config; move damaged ones aside."""
        make_report_dir(self.parts_dir)
        for part in sorted(self.parts_dir.glob("part-*.parquet")):
            try:
                if file_metadata(part).get("config_id") != self.config_id:
                    self.foreign_parts += 1
                    continue
                keys = read_keys(part)
            except (OSError, ValueError, pa.ArrowException, SpecError) as exc:
                self._set_aside(part, exc)
                continue
            self.old_parts += 1
            for key, status in keys:
                if self.retry_errors and status == Status.ERROR.value:
                    self.retried += 1
                    continue
                self._done[key] = part
        if self.foreign_parts:
            log.warning(
                "%d part file(s) in %s belong to another bundle or other options; "
                "they are ignored and those files are scanned again",
                self.foreign_parts,
                self.parts_dir,
            )
        return self

    def __len__(self) -> int:
        return len(self._done)

    def add_previous(
        self, images: Path, keys: Iterable[tuple[FileKey, str]], *, errors: bool = False
    ) -> int:
        """Take the rows of a previous night's ``images.parquet`` as done too (``--previous``),
        except where this ``--out``'s own parts already hold the file; ``error`` rows only
        with ``errors``. Returns how many files were added."""
        added = 0
        for key, status in keys:
            if key in self._done or (status == Status.ERROR.value and not errors):
                continue
            self._done[key] = images
            added += 1
        return added

    def previous_paths(self, images: Path) -> set[str]:
        """The paths of the files this ledger holds from ``images`` (see add_previous)."""
        return {key[0] for key, source in self._done.items() if source == images}

    def _set_aside(self, part: Path, error: BaseException) -> None:
        """Move a part that cannot be read (a torn write, a disk error) into
        ``parts/damaged/``: its files are scanned again, and the evidence is kept."""
        damaged = self.parts_dir / DAMAGED_DIR
        make_report_dir(damaged)
        os.replace(part, damaged / part.name)
        self.damaged_parts += 1
        log.warning("part file %s cannot be read (%s); moved to %s and its files are "
                    "scanned again", part.name, error, damaged)  # fmt: skip

    def reuse(self, key: FileKey) -> bool:
        """True (and remember it for assembly) when ``key`` is already reported."""
        if self.pseudonyms is not None:
            key = (self.pseudonyms.path(key[0]), key[1], key[2])
        if key in self._done:
            self._reused.add(key)
            return True
        return False

    @property
    def reused(self) -> int:
        return len(self._reused)

    def write_part(self, rows: Sequence[ImageRow], provenance: Provenance) -> Path:
        """Write one finished chunk's rows (pseudonymised when the ledger has
        ``pseudonyms``) as an atomic part file."""
        if self.pseudonyms is not None:
            rows = self.pseudonyms.image_rows(rows)
        schema = load_schema("images")
        keys = sorted({row.key for row in rows})
        digest = hashlib.sha256(json.dumps([self.config_id, keys]).encode()).hexdigest()[:24]
        path = self.parts_dir / f"part-{digest}.parquet"
        write_parquet(rows_to_table(rows, schema), path, schema, provenance)
        self._new_parts.append(path)
        return path

    def assemble(self) -> pa.Table:
        """All rows of this scan: new parts plus reused old rows, sorted by (path, frame)."""
        schema = load_schema("images")
        tables = [pq.read_table(path) for path in self._new_parts]
        reused_parts = sorted({self._done[key] for key in self._reused} - set(self._new_parts))
        for source in reused_parts:
            table = pq.read_table(source)
            keys = zip(*(table.column(c).to_pylist() for c in _KEY_COLUMNS), strict=True)
            tables.append(table.filter(pa.array([k in self._reused for k in keys])))
        if not tables:
            return schema.arrow.empty_table()
        table = pa.concat_tables([t.cast(schema.arrow) for t in tables])
        table = table.sort_by([("path", "ascending"), ("frame", "ascending")])
        return _drop_duplicates(table)


def read_keys(part: Path) -> list[tuple[FileKey, str]]:
    """``((path, size, mtime), status)`` of every row of a part (or of an images.parquet),
    reading the whole file against the images schema so that a damaged file is found now,
    not while assembling. Raises what pyarrow raises, or :class:`SpecError`."""
    schema = load_schema("images")
    table = pq.read_table(part)
    check_table(table.cast(schema.arrow), schema)
    columns = table.select([*_KEY_COLUMNS, "status"]).to_pydict()
    keys = zip(*(columns[c] for c in _KEY_COLUMNS), strict=True)
    return list(zip(keys, columns["status"], strict=True))


def _drop_duplicates(table: pa.Table) -> pa.Table:
    """Keep the first of rows sharing (path, frame); there should never be any."""
    if table.num_rows < 2:
        return table
    path, frame = table.column("path"), table.column("frame")
    same = pc.and_(
        pc.equal(path.slice(1), path.slice(0, table.num_rows - 1)),
        pc.equal(frame.slice(1), frame.slice(0, table.num_rows - 1)),
    )
    if not pc.any(same).as_py():
        return table
    log.error("%d duplicate (path, frame) rows in parts; keeping the first", pc.sum(same).as_py())
    keep = pa.concat_arrays([pa.array([True]), pc.invert(same).combine_chunks()])
    return table.filter(keep)


def remove_stale_temp_files(outdir: Path) -> None:
    """Delete temporary files a killed run of batchfrac left behind (never a report, and
    never another program's files: only names :func:`~batchfrac.atomic.is_our_temp_file`
    recognises)."""
    for directory in (outdir, outdir / PARTS_DIR):
        if directory.is_dir():
            for path in directory.iterdir():
                if is_our_temp_file(path):
                    path.unlink(missing_ok=True)
