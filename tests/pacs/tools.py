"""External tools for the PACS tests: the validators and a real Orthanc on 127.0.0.1.

Tests that need a missing binary are skipped with the reason locally, and FAIL when
``BATCHFRAC_REQUIRE_TOOLS=1`` (CI installs the Debian packages and sets it), so that a
broken CI image never turns the PACS tests into silent skips.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("BATCHFRAC_REQUIRE_TOOLS") == "1"

DICOMWEB_PLUGIN_PATHS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so",
)
PACKAGES = {
    "Orthanc": "orthanc",
    "dciodvfy": "dicom3tools",
    "dsrdump": "dcmtk",
    "libOrthancDicomWeb.so": "orthanc-dicomweb",
}


def missing_tool(name: str) -> None:
    """Skip (locally) or fail (CI) because ``name`` is not installed."""
    message = (
        f"{name} is not installed (Debian package {PACKAGES.get(name, name)}; .ci/run installs it)"
    )
    if REQUIRE_TOOLS:
        pytest.fail(f"{message}; BATCHFRAC_REQUIRE_TOOLS=1 requires it", pytrace=False)
    pytest.skip(message)


def tool(name: str) -> str:
    """The path of executable ``name`` (also looked for in /usr/sbin, where Orthanc lives)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        missing_tool(name)
    return str(found)


def dicomweb_plugin() -> str:
    """The Orthanc DICOMweb plugin's shared library."""
    for path in DICOMWEB_PLUGIN_PATHS:
        if Path(path).is_file():
            return path
    missing_tool("libOrthancDicomWeb.so")
    raise AssertionError("unreachable")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: its ports, URLs and a few REST helpers for the tests."""

    http_port: int
    dicom_port: int
    aet: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, path: Path) -> bool:
        """POST one file to /instances; whether Orthanc stored it."""
        import requests

        response = requests.post(f"{self.url}/instances", data=path.read_bytes(), timeout=30)
        return response.status_code == 200

    def get(self, resource: str) -> object:
        import requests

        response = requests.get(f"{self.url}{resource}", timeout=30)
        response.raise_for_status()
        return response.json()

    def instance_count(self) -> int:
        stats = self.get("/statistics")
        assert isinstance(stats, dict)
        return int(stats["CountInstances"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_orthanc(root: Path, *, lua: str | None = None) -> Orthanc:
    """Start Orthanc with storage, index and config under ``root``; wait until it answers."""
    import requests

    binary = tool("Orthanc")
    plugin = dicomweb_plugin()
    root.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "batchfrac-test",
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAetTitle": False,
        "HttpTimeout": 30,
        "SaveJobs": False,
    }
    if lua is not None:
        (root / "filter.lua").write_text(lua)
        config["LuaScripts"] = [str(root / "filter.lua")]
    (root / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = root / "orthanc.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [binary, str(root / "orthanc.json")],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Orthanc(http_port, dicom_port, "ORTHANC", log, process)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"Orthanc exited with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{server.dicomweb}/studies", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"Orthanc did not answer within 60 s:\n{log.read_text()}")
        time.sleep(0.2)


def dciodvfy_errors(path: Path) -> list[str]:
    """The lines of dciodvfy's report on ``path`` that contain "Error" (none = valid)."""
    result = subprocess.run(
        [tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120
    )
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if "Error" in line]


def dsrdump(path: Path) -> subprocess.CompletedProcess[str]:
    """dcmtk's dsrdump of ``path`` (exit code 0 when it could read the SR document)."""
    return subprocess.run([tool("dsrdump"), str(path)], capture_output=True, text=True, timeout=120)
