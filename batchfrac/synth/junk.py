"""The non-image files a real archive holds, each with the reason a scan should give.

Their contents are fixed bytes (no clock), so archives stay byte-identical per seed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..enums import Reason

README_TEXT = """\
Export of imaging studies (synthetic)
=====================================

This folder was written by `batchfrac synth`. Every image in it is a synthetic
radiograph drawn by a program: there is no patient data. The files next to the
images (this README, .DS_Store, ._image1.png, a truncated DICOM file and the
DICOMDIR) are the clutter real archives contain; a scanner must skip or reject
each of them with a reason and carry on.
"""


@dataclass(frozen=True)
class JunkFile:
    """One non-image file: its path relative to the archive root and expected reason."""

    path: str
    reason: Reason
    description: str


def ds_store_bytes() -> bytes:
    """A small Finder ``.DS_Store`` (Bud1 buddy-allocator header, then padding)."""
    header = b"\x00\x00\x00\x01Bud1" + struct.pack(">III", 0x800, 0x800, 0x800)
    return header + bytes(0x800 - len(header))


def apple_double_bytes() -> bytes:
    """An AppleDouble resource file as macOS leaves in zips (``._name`` companions)."""
    header = struct.pack(">II", 0x00051607, 0x00020000) + b"Mac OS X        "
    entries = struct.pack(">H", 1) + struct.pack(">III", 9, 50, 32)
    finder_info = b"PNGfBDRW" + bytes(24)
    return header + entries + finder_info


def write_bytes(root: Path, relative: str, data: bytes) -> None:
    """Write ``data`` at ``root/relative``, creating folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_clutter(root: Path, folder: str) -> list[JunkFile]:
    """README.txt at the root, and a .DS_Store and ._image1.png in ``folder``."""
    prefix = f"{folder}/" if folder else ""
    files = [
        JunkFile("README.txt", Reason.NOT_DICOM, "plain-text README of the export"),
        JunkFile(f"{prefix}.DS_Store", Reason.NOT_DICOM, "macOS Finder metadata"),
        JunkFile(f"{prefix}._image1.png", Reason.NOT_DICOM, "macOS AppleDouble companion"),
    ]
    write_bytes(root, files[0].path, README_TEXT.encode("ascii"))
    write_bytes(root, files[1].path, ds_store_bytes())
    write_bytes(root, files[2].path, apple_double_bytes())
    return files


def write_truncated(root: Path, source: str, target: str, fraction: float = 0.6) -> JunkFile:
    """A copy of the DICOM file ``source`` cut after ``fraction`` of its bytes."""
    data = (root / source).read_bytes()
    write_bytes(root, target, data[: int(len(data) * fraction)])
    return JunkFile(target, Reason.TRUNCATED, f"first {fraction:.0%} of {source}")
