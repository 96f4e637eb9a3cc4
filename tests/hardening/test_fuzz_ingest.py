"""Property tests: whatever a file holds, ``ingest_file`` and ``doctor.survey`` return rows
and never raise (DESIGN.md invariant 1).

Mutated files of every transfer syntax (``tests.fuzz_strategies``), in-process, with a
fixed seed (``derandomize=True``, no example database): ``BATCHFRAC_FUZZ_EXAMPLES``
examples per syntax and strategy (default 12; about a minute in all), and a ``slow``
variant with ``BATCHFRAC_FUZZ_SLOW_EXAMPLES`` (default 150).

Each example runs in a forked copy of the test process (``tests.hardening.isolated``),
because a codec can fail in ways no ``except`` catches: python-gdcm aborts the process on
some corrupt JPEG 2000 frames (SIGABRT, found by the ``slow`` variant), and a codec stuck in
C code cannot be interrupted. The parent fails the example when the child raised, died of a
signal, gave no answer within ``EXAMPLE_DEADLINE_S``, or grew past ``EXAMPLE_MEMORY_GB``
(default 3) resident; it then kills the child, so a hang or a memory bomb fails its example
instead of blocking the run or exhausting the machine. The example being run is always at
``<basetemp>/fuzz*/current-example.dcm``, its mutation in ``current-example.txt``.
``BATCHFRAC_FUZZ_IN_PROCESS=1`` runs the checks in the test process (for a debugger),
without these guards.

Everything that escapes (``PanicException`` from a Rust codec and ``RecursionError``
included; ``KeyboardInterrupt`` excepted) fails the example with its type, message and
the frame that raised it, so Hypothesis can shrink it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from batchfrac.doctor import survey
from batchfrac.enums import Reason, Status
from batchfrac.ingest.entry import IngestConfig, ingest_file
from batchfrac.ingest.preprocess import PreprocessSpec
from tests.fuzz_strategies import Seed, build_seeds, byte_mutations, header_mutations, seed_names
from tests.hardening.isolated import run_isolated
from tests.hardening.never_raises import never_raises
from tests.more_encoders import ALL_SYNTAXES

CONFIG = IngestConfig(spec=PreprocessSpec(image_size=32, working_size=64))
EXAMPLES = int(os.environ.get("BATCHFRAC_FUZZ_EXAMPLES", "12"))
SLOW_EXAMPLES = int(os.environ.get("BATCHFRAC_FUZZ_SLOW_EXAMPLES", "150"))
EXAMPLE_DEADLINE_S = 60.0
EXAMPLE_MEMORY_GB = float(os.environ.get("BATCHFRAC_FUZZ_MEMORY_GB", "3"))
IN_PROCESS = os.environ.get("BATCHFRAC_FUZZ_IN_PROCESS") == "1"

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning")]  # pydicom on bad data


def fuzz_settings(examples: int, *, shrink: bool) -> settings:
    """Fixed seed, no example database. The CI variant does not shrink a failure (each
    shrink step is an ingest; hundreds per failing syntax): it reports the first
    failing example of each kind as drawn; the slow variant shrinks."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        phases=phases,
        deadline=None,  # hangs are run_isolated's: Hypothesis' deadline cannot stop one
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


class Seeds(dict[str, Seed]):
    """The seed files by name, shown by name only in Hypothesis' falsifying examples."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<seeds {sorted(self)}>")


@pytest.fixture(scope="module")
def seeds(workdir: Path) -> dict[str, Seed]:
    return Seeds(build_seeds(workdir / "seeds"))


def run_example(workdir: Path, data: bytes, description: str) -> None:
    """Write the example where a post-mortem finds it, then check it in a forked child."""
    path = workdir / "current-example.dcm"
    path.write_bytes(data)
    (workdir / "current-example.txt").write_text(description + "\n")

    def check() -> None:
        assert_rows(path)
        assert_survey(path)

    if IN_PROCESS:
        check()
        return
    memory = int(EXAMPLE_MEMORY_GB * (1 << 30))
    run_isolated(check, deadline_s=EXAMPLE_DEADLINE_S, max_rss=memory, what=description)


def assert_rows(path: Path) -> None:
    rows = never_raises(ingest_file, path, CONFIG)
    assert isinstance(rows, list) and len(rows) >= 1, f"no row for {path}"
    for row in rows:
        assert isinstance(row.status, Status)
        assert row.file.path == str(path)
        if row.status is Status.OK:
            assert row.reason is None and row.pixels is not None and row.header is not None
            assert np.isfinite(row.pixels).all(), "an ok image holds NaN or inf"
            assert row.frame < row.header.number_of_frames, (
                f"phantom frame {row.frame} of a file that declares {row.header.number_of_frames}"
            )
        else:
            assert isinstance(row.reason, Reason) and row.reason.status is row.status
    ok_frames = [row.frame for row in rows if row.status is Status.OK]
    assert len(ok_frames) == len(set(ok_frames)), "a frame reported twice"
    if len(rows) > 1:
        assert all(row.status is Status.OK for row in rows), "a rejected file gives one row"


def assert_survey(path: Path) -> None:
    report = never_raises(survey, path)
    assert report.files == 1
    assert sum(report.by_status.values()) == 1, dict(report.by_status)
    assert set(report.by_status) <= {status.value for status in Status}
    assert sum(report.by_reason.values()) == 1 - report.by_status[Status.OK.value]


def check_bytes(seeds: dict[str, Seed], workdir: Path, syntax: str, data: st.DataObject) -> None:
    seed = seeds[data.draw(st.sampled_from(seed_names(list(seeds), syntax)), label="seed")]
    mutation = data.draw(byte_mutations(), label="mutation")
    run_example(workdir, mutation.apply(seed), f"{seed.name}: {mutation}")


def check_header(seeds: dict[str, Seed], workdir: Path, syntax: str, data: st.DataObject) -> None:
    seed = seeds[data.draw(st.sampled_from(seed_names(list(seeds), syntax)), label="seed")]
    mutation = data.draw(header_mutations(), label="mutation")
    run_example(workdir, mutation.apply(seed), f"{seed.name}: {mutation}")


SYNTAXES = pytest.mark.parametrize("syntax", [str(s) for s in ALL_SYNTAXES])


@SYNTAXES
@pytest.mark.timeout(600)
@fuzz_settings(EXAMPLES, shrink=False)
@given(data=st.data())
def test_byte_mutations_always_give_rows(
    seeds: dict[str, Seed], workdir: Path, syntax: str, data: st.DataObject
) -> None:
    check_bytes(seeds, workdir, syntax, data)


@SYNTAXES
@pytest.mark.timeout(600)
@fuzz_settings(EXAMPLES, shrink=False)
@given(data=st.data())
def test_header_mutations_always_give_rows(
    seeds: dict[str, Seed], workdir: Path, syntax: str, data: st.DataObject
) -> None:
    check_header(seeds, workdir, syntax, data)


@pytest.mark.slow
@SYNTAXES
@pytest.mark.timeout(3600)
@fuzz_settings(SLOW_EXAMPLES, shrink=True)
@given(data=st.data())
def test_byte_mutations_always_give_rows_many(
    seeds: dict[str, Seed], workdir: Path, syntax: str, data: st.DataObject
) -> None:
    check_bytes(seeds, workdir, syntax, data)


@pytest.mark.slow
@SYNTAXES
@pytest.mark.timeout(3600)
@fuzz_settings(SLOW_EXAMPLES, shrink=True)
@given(data=st.data())
def test_header_mutations_always_give_rows_many(
    seeds: dict[str, Seed], workdir: Path, syntax: str, data: st.DataObject
) -> None:
    check_header(seeds, workdir, syntax, data)


def test_the_seeds_are_valid(seeds: dict[str, Seed], workdir: Path) -> None:
    """The unmutated seeds are ok, every frame: a failure above is the mutation's doing."""
    for seed in seeds.values():
        path = workdir / f"{seed.name}.dcm"
        path.write_bytes(seed.data)
        rows = ingest_file(path, CONFIG)
        frames = 3 if seed.name.endswith("-3f") else 1
        assert [(r.status, r.frame) for r in rows] == [(Status.OK, f) for f in range(frames)]
