"""The part-file ledger that makes a scan resumable (README: invariant 2, nothing lost).

Each finished chunk of files becomes one ``OUTDIR/parts/part-<hash>.parquet`` (images
schema, written atomically). The ledger is the set of ``(path, file_size, file_mtime_ns)``
keys found in the parts whose ``config_id`` matches this scan's; ``config_id`` hashes the
model bundle id and every option that changes a row (routing, modalities, pixel cap,
low-confidence threshold, images schema version). A re-run therefore skips files already
reported for the same input and bundle, and redoes a file whose size or mtime changed.

Parts written under another ``config_id`` (another bundle, other options) are left in
``parts/`` untouched and never mixed into the reports: that scan is redone from scratch.
The final ``images.parquet`` is assembled from this scan's new parts plus the rows of
old parts whose files this scan found unchanged, sorted by path and frame.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import exclusive_lock, is_our_temp_file
from ..errors import BatchfracError
from ..report.parquet import Provenance, file_metadata, write_parquet
from ..report.rows import ImageRow
from ..report.schema import load_schema, rows_to_table

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
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
    """Finished work in ``OUTDIR/parts`` for one ``config_id``; also writes new parts."""

    def __init__(self, outdir: Path, config: str) -> None:
        self.parts_dir = outdir / PARTS_DIR
        self.config_id = config
        self._done: dict[FileKey, str] = {}
        self._reused: set[FileKey] = set()
        self._new_parts: list[str] = []
        self.foreign_parts = 0
        self.old_parts = 0

    def load(self) -> Ledger:
        """Read the keys of every part of this config (column projection only)."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        for part in sorted(self.parts_dir.glob("part-*.parquet")):
            if file_metadata(part).get("config_id") != self.config_id:
                self.foreign_parts += 1
                continue
            self.old_parts += 1
            keys = pq.read_table(part, columns=_KEY_COLUMNS).to_pydict()
            for key in zip(*(keys[c] for c in _KEY_COLUMNS), strict=True):
                self._done[key] = part.name
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

    def reuse(self, key: FileKey) -> bool:
        """True (and remember it for assembly) when ``key`` is already reported."""
        if key in self._done:
            self._reused.add(key)
            return True
        return False

    @property
    def reused(self) -> int:
        return len(self._reused)

    def write_part(self, rows: Sequence[ImageRow], provenance: Provenance) -> Path:
        """Write one finished chunk's rows as an atomic part file."""
        schema = load_schema("images")
        keys = sorted({row.key for row in rows})
        digest = hashlib.sha256(json.dumps([self.config_id, keys]).encode()).hexdigest()[:24]
        path = self.parts_dir / f"part-{digest}.parquet"
        write_parquet(rows_to_table(rows, schema), path, schema, provenance)
        self._new_parts.append(path.name)
        return path

    def assemble(self) -> pa.Table:
        """All rows of this scan: new parts plus reused old rows, sorted by (path, frame)."""
        schema = load_schema("images")
        tables = [pq.read_table(self.parts_dir / name) for name in self._new_parts]
        reused_parts = sorted({self._done[key] for key in self._reused} - set(self._new_parts))
        for name in reused_parts:
            table = pq.read_table(self.parts_dir / name)
            keys = zip(*(table.column(c).to_pylist() for c in _KEY_COLUMNS), strict=True)
            tables.append(table.filter(pa.array([k in self._reused for k in keys])))
        if not tables:
            return schema.arrow.empty_table()
        table = pa.concat_tables([t.cast(schema.arrow) for t in tables])
        table = table.sort_by([("path", "ascending"), ("frame", "ascending")])
        return _drop_duplicates(table)


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
