"""Tests for batchfrac.ingest.capture: what ingesting a file says goes to its log, bounded,
and never to the process's stderr."""

from __future__ import annotations

import logging
import os
import threading
import warnings

import pytest

from batchfrac.ingest import capture
from batchfrac.ingest.capture import FileLog, captured, describe, format_traceback, native_stderr


class TestDescribe:
    def test_type_and_message_on_one_bounded_line(self) -> None:
        text = describe(ValueError("bad\nvalue   here"))
        assert text == "ValueError: bad value here"
        assert len(describe(RuntimeError("x" * 10_000))) <= capture.MAX_DETAIL_CHARS

    def test_an_exception_without_message_is_its_type(self) -> None:
        assert describe(MemoryError()) == "MemoryError"

    def test_traceback_names_the_raising_function(self) -> None:
        def deep() -> None:
            raise KeyError("x")

        try:
            deep()
        except KeyError as exc:
            text = format_traceback(exc)
        assert "in deep" in text and text.endswith("KeyError: 'x'")


class TestFileLog:
    def test_repeats_are_kept_once_and_counted(self) -> None:
        log = FileLog()
        for _ in range(5):
            log.add("same")
        log.add("other")
        assert log.entries() == ("same", "other", "4 repeated message(s) left out")

    def test_entries_and_total_size_are_bounded(self) -> None:
        log = FileLog()
        for number in range(capture.MAX_ENTRIES + 10):
            log.add(f"{number}: " + "x" * 10_000)
        entries = log.entries()
        assert len(entries) <= capture.MAX_ENTRIES + 1
        assert sum(map(len, entries)) <= capture.MAX_TOTAL_CHARS + 200
        assert all(len(entry) <= capture.MAX_ENTRY_CHARS for entry in entries)
        assert "over this file's log limit" in entries[-1]


class TestCaptured:
    def test_warnings_and_pydicom_records_go_to_the_log_only(
        self, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        root = logging.getLogger()
        handler = logging.StreamHandler()  # on stderr, as an application might have one
        root.addHandler(handler)
        log = FileLog()
        try:
            with captured(log):
                warnings.warn("odd value", UserWarning, stacklevel=1)
                logging.getLogger("pydicom").error("plugin failed")
        finally:
            root.removeHandler(handler)
        assert log.entries() == ("UserWarning: odd value", "ERROR pydicom: plugin failed")
        out, err = capfd.readouterr()
        assert "odd value" not in err + out and "plugin failed" not in err + out
        assert "plugin failed" not in caplog.text

    def test_state_is_restored_afterwards(self) -> None:
        logger = logging.getLogger("pydicom")
        handlers, propagate = list(logger.handlers), logger.propagate
        show = warnings.showwarning
        with captured(FileLog()):
            pass
        assert logger.handlers == handlers and logger.propagate == propagate
        assert warnings.showwarning is show

    def test_records_of_other_threads_go_where_they_would_have_gone(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        log = FileLog()

        def other() -> None:
            logging.getLogger("pydicom").warning("from elsewhere")
            warnings.warn("y", UserWarning, stacklevel=1)

        with captured(log):
            worker = threading.Thread(target=other)
            worker.start()
            worker.join()
        assert log.entries() == ()
        assert "from elsewhere" in caplog.text

    def test_threads_capturing_at_once_each_get_their_own(self) -> None:
        logs = {name: FileLog() for name in ("a", "b")}
        both_in = threading.Barrier(2)
        both_done = threading.Barrier(2)

        def ingest(name: str) -> None:
            with captured(logs[name]):
                both_in.wait()
                warnings.warn(f"warning {name}", UserWarning, stacklevel=1)
                logging.getLogger("pydicom").error("record %s", name)
                both_done.wait()

        workers = [threading.Thread(target=ingest, args=(name,)) for name in logs]
        show, propagate = warnings.showwarning, logging.getLogger("pydicom").propagate
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for name, log in logs.items():
            expected = (f"UserWarning: warning {name}", f"ERROR pydicom: record {name}")
            assert log.entries() == expected
        assert warnings.showwarning is show
        assert logging.getLogger("pydicom").propagate == propagate


class TestNativeStderr:
    def test_descriptor_2_is_caught_inside_captured(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        log = FileLog()
        with captured(log), native_stderr():
            os.write(2, b"thread '<unnamed>' panicked at src/lib.rs\n")
        assert log.entries() == ("stderr: thread '<unnamed>' panicked at src/lib.rs",)
        assert "panicked" not in capfd.readouterr().err

    def test_outside_captured_nothing_is_redirected(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        with native_stderr():
            os.write(2, b"visible\n")
        assert "visible" in capfd.readouterr().err
