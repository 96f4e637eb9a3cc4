"""A headless Debian ``chromium`` driven through ``chromium-driver`` (Selenium 4), offline.

Missing locally: the tests are skipped with the reason; with ``BATCHFRAC_REQUIRE_TOOLS=1``
(CI installs the packages and sets it) they fail instead. The browser gets a fresh profile
and the flags that stop its own background connections (this machine refuses them);
everything it starts is stopped by process id when the test module ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_TOOLS = os.environ.get("BATCHFRAC_REQUIRE_TOOLS") == "1"
CHROMIUM = ("chromium", "chromium-browser")
DRIVER = ("chromedriver", "chromium-driver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1800",
)  # fmt: skip


def missing(what: str) -> None:
    """Skip (locally) or fail (CI) because ``what`` is not installed."""
    message = f"{what} is not installed (.ci/run installs it)"
    if REQUIRE_TOOLS:
        pytest.fail(f"{message}; BATCHFRAC_REQUIRE_TOOLS=1 requires it", pytrace=False)
    pytest.skip(message)


def _which(names: tuple[str, ...], package: str) -> str:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/lib/chromium:/usr/bin")
        if found:
            return found
    missing(f"{names[0]} (Debian package {package})")
    raise AssertionError("unreachable")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Selenium WebDriver on a headless chromium with console and network logging."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium (pip install '.[test]')")
    binary = _which(CHROMIUM, "chromium")
    driver_path = _which(DRIVER, "chromium-driver")
    profile = tempfile.mkdtemp(prefix="batchfrac-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
        _stop(service, profile)
        shutil.rmtree(profile, ignore_errors=True)


def _stop(service: Any, profile: str) -> None:
    """Kill, by process id, the driver and any browser process of our own profile that
    ``quit`` left behind."""
    import psutil

    pids = []
    process = getattr(service, "process", None)
    if process is not None and process.poll() is None:
        pids.append(process.pid)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(f"--user-data-dir={profile}" == arg for arg in proc.info["cmdline"] or ()):
                pids.append(proc.info["pid"])
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def drain_logs(driver: Any) -> None:
    """Forget the console and network entries so far (the browser's own start-up pages)."""
    driver.get_log("browser")
    driver.get_log("performance")


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser requested since the last :func:`drain_logs`."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def open_page(driver: Any, page: Path, timeout: float = 30.0) -> None:
    """Load ``page`` from the file system and wait until its script has rendered it."""
    from selenium.webdriver.support.ui import WebDriverWait

    drain_logs(driver)
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.classList.contains('ready')")
    )
