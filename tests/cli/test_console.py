"""batchfrac.cli.console: native standard error into the scan's log (0640), through a
scrubber for a pseudonymised scan; run in a child process whose fd 2 is real."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import os, subprocess, sys
    from pathlib import Path
    from batchfrac.cli.console import native_stderr_to

    log = Path(sys.argv[1])
    scrub = (lambda text: text.replace("SYNTH0002", "<pseudonym>")) if sys.argv[2] == "1" else None
    with native_stderr_to(log, scrub) as terminal:
        os.write(2, b"native: /archive/SYNTH0002/IM1\\n")
        child = "import sys; sys.stderr.write('child SYNTH0002\\\\n')"
        subprocess.run([sys.executable, "-c", child])
        terminal.write("to the terminal\\n")
    os.write(2, b"after: back on the terminal\\n")
    """
)


def run(tmp_path: Path, scrub: bool) -> tuple[str, str]:
    log = tmp_path / "scan.log"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(log), "1" if scrub else "0"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert stat.S_IMODE(log.stat().st_mode) & 0o027 == 0  # 0640 or stricter
    return log.read_text(), result.stderr


def test_native_output_goes_to_the_log(tmp_path: Path) -> None:
    log, terminal = run(tmp_path, scrub=False)
    assert log == "native: /archive/SYNTH0002/IM1\nchild SYNTH0002\n"
    assert terminal == "to the terminal\nafter: back on the terminal\n"


def test_a_scrubber_sees_every_line_first_also_of_child_processes(tmp_path: Path) -> None:
    log, terminal = run(tmp_path, scrub=True)
    assert log == "native: /archive/<pseudonym>/IM1\nchild <pseudonym>\n"
    assert terminal == "to the terminal\nafter: back on the terminal\n"
