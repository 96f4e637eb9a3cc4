"""The exported objects pass dicom3tools' dciodvfy (no "Error" line) and dcmtk's dsrdump
reads them, in every variant the export makes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.uid import MultiFrameGrayscaleWordSecondaryCaptureImageStorage

from batchfrac.pacs.export import ExportSummary, ObjectKind, export_dicom
from batchfrac.report.pseudonym import Pseudonymizer
from tests.pacs import scan_output as so
from tests.pacs.test_export import HAND, KEY, WRIST
from tests.pacs.tools import dciodvfy_errors, dsrdump


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One object of each variant: SR, KOS, pseudonymised SR and KOS, SR of a vanished source."""
    root = tmp_path_factory.mktemp("validate")
    scan = so.make_scan_output(root / "scan")
    plain = export_dicom(scan, root / "plain")
    pseudo = export_dicom(scan, root / "pseudo", pseudonymizer=Pseudonymizer(KEY))
    shutil.rmtree(root / "scan" / "archive" / "study1")
    gone = export_dicom(scan, root / "gone")
    studies = so.standard_studies()
    studies[1].images[0].sop_class_uid = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    frames = export_dicom(so.make_scan_output(root / "frames", studies), root / "frames-dicom")

    def pick(summary: ExportSummary, kind: ObjectKind, study: str) -> Path:
        return next(
            o.path for o in summary.objects if o.kind is kind and o.study_instance_uid == study
        )

    return {
        "sr": pick(plain, ObjectKind.SR, HAND),
        "sr-multiframe": pick(plain, ObjectKind.SR, WRIST),
        "kos": pick(plain, ObjectKind.KOS, HAND),
        "sr-pseudonymised": pick(pseudo, ObjectKind.SR, HAND),
        "kos-pseudonymised": pick(pseudo, ObjectKind.KOS, HAND),
        "sr-source-gone": pick(gone, ObjectKind.SR, WRIST),
        "sr-frame-references": pick(frames, ObjectKind.SR, WRIST),
    }


VARIANTS = [
    "sr", "sr-multiframe", "kos", "sr-pseudonymised", "kos-pseudonymised", "sr-source-gone",
    "sr-frame-references",
]  # fmt: skip


class TestValidators:
    @pytest.mark.parametrize("variant", VARIANTS)
    def test_dciodvfy_finds_no_error(self, validated: dict[str, Path], variant: str) -> None:
        assert dciodvfy_errors(validated[variant]) == []

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_dsrdump_reads_it(self, validated: dict[str, Path], variant: str) -> None:
        result = dsrdump(validated[variant])
        assert result.returncode == 0, result.stderr
        expected = (
            "Key Object Selection Document" if "kos" in variant else "Comprehensive SR Document"
        )
        assert expected in result.stdout
